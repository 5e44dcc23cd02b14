"""The documentation: the site builds with every formula rendered, and every Python block runs.

Code blocks
-----------
Every fenced ```python block of ``README.md`` and ``docs/*.md`` is one test case, with the id
``<page>:<n>`` for the n-th Python block of the page (``docs/numpyro.md:3``). It runs in a fresh
``python`` process (this test's interpreter), in an empty temporary folder, with the repository root
on ``PYTHONPATH`` and a timeout of ``BLOCK_TIMEOUT_S`` seconds, and passes when it exits with status 0.
Blocks in any other language (``bash``, ``text``, ``diff``, none) are not run: Python that is not
meant to run as it stands (a fragment, pseudo-code, a two-line change) gets ```text or ```diff as its
fence, not ```python. There is no marker to skip a Python block.

An HTML comment on the line just before the opening fence, invisible on the site, says how a block
runs (``docs/installation.md`` documents this for contributors)::

    <!-- docs-test: continue -->
    <!-- docs-test: needs german_credit -->
    <!-- docs-test: continue; needs mnist -->

- ``continue``: the block continues the page's previous Python block: it runs after that block (and
  whatever that block continues), concatenated into one script. The block before still runs alone
  too.
- ``needs <data set>[, <data set>]``: the block reads a shared data set, ``mnist`` or
  ``german_credit``. It runs when the data are present (the folder named by ``L2HMC_PPL_MNIST`` /
  ``L2HMC_PPL_GERMAN_CREDIT`` if set, else ``../shared/data/<name>`` beside the repository, which CI
  has), with that variable set to the folder, so the block finds the data through the library's
  loaders; without the data it is skipped, saying why. A block that continues one with ``needs``
  needs the same data.

A marker that is not understood, or that is not followed by a Python fence, fails
``test_markers_are_valid``.

Keep each block small enough to run in a few tens of seconds on a 2-core CPU (few training or
sampling steps) and say in the prose what a real run would use.
"""

from __future__ import annotations

import html
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK_TIMEOUT_S = 300

# The shared data sets: the environment variable the library reads, and the files that must exist.
DATA_SETS = {
    "mnist": (
        "L2HMC_PPL_MNIST",
        (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
    ),
    "german_credit": ("L2HMC_PPL_GERMAN_CREDIT", ("features.npy", "labels.npy", "reference_moments.json")),
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"^[ \t]*<!--\s*docs-test:(?P<body>.*?)-->[ \t]*$")
_PYTHON = {"python", "py"}


@dataclass
class Block:
    page: str  # relative to the repository root
    index: int  # 1-based among the page's Python blocks
    line: int  # 1-based line of the opening fence
    code: str  # the block's own code
    script: str  # what runs: the code of the blocks it continues, then its own
    needs: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.index}"


def _dedent(lines: list[str], indent: str) -> list[str]:
    return [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines]


def parse_page(path: Path) -> tuple[list[Block], list[str]]:
    """The page's Python blocks, and the problems with its markers."""
    page = path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    pending: tuple[int, str] | None = None  # a marker waiting for its fence: (line, body)
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            if pending:
                problems.append(f"{page}:{pending[0]}: marker not followed by a ```python fence")
            pending = (i + 1, marker.group("body"))
            i += 1
            continue
        if not fence:
            if pending and line.strip():
                problems.append(f"{page}:{pending[0]}: marker not followed by a ```python fence")
                pending = None
            i += 1
            continue
        # a fenced block: find its end (same character, at least as long, nothing after it)
        opening, info, indent = fence.group("fence"), fence.group("info").lower(), fence.group("indent")
        end = i + 1
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(opening[0] * len(opening)) and set(closing) == {opening[0]}:
                break
            end += 1
        body = _dedent(lines[i + 1 : end], indent)
        if info in _PYTHON:
            code = "\n".join(body) + "\n"
            block = Block(page, len(blocks) + 1, i + 1, code, code)
            if pending:
                for directive in filter(None, (d.strip() for d in pending[1].split(";"))):
                    word, _, rest = directive.partition(" ")
                    if word == "continue" and not rest.strip():
                        if not blocks:
                            problems.append(
                                f"{page}:{pending[0]}: `continue` on the page's first Python block"
                            )
                            continue
                        block.script = blocks[-1].script + "\n" + code
                        block.needs |= blocks[-1].needs
                    elif word == "needs" and rest.strip():
                        names = {name.strip() for name in rest.split(",") if name.strip()}
                        unknown = names - set(DATA_SETS)
                        if unknown:
                            problems.append(
                                f"{page}:{pending[0]}: unknown data set(s) {sorted(unknown)}; "
                                f"known: {sorted(DATA_SETS)}"
                            )
                        block.needs |= names & set(DATA_SETS)
                    else:
                        problems.append(f"{page}:{pending[0]}: unknown directive {directive!r}")
            blocks.append(block)
        elif pending:
            problems.append(f"{page}:{pending[0]}: marker before a ```{info} block; only Python blocks run")
        pending = None
        i = end + 1
    if pending:
        problems.append(f"{page}:{pending[0]}: marker not followed by a ```python fence")
    return blocks, problems


BLOCKS: list[Block] = []
MARKER_PROBLEMS: list[str] = []
for _page in PAGES:
    _blocks, _problems = parse_page(_page)
    BLOCKS += _blocks
    MARKER_PROBLEMS += _problems


def data_folder(name: str) -> Path | None:
    """The folder of a shared data set if it holds every file, else None."""
    variable, files = DATA_SETS[name]
    folder = (
        Path(os.environ[variable]) if os.environ.get(variable) else REPO.parent / "shared" / "data" / name
    )
    return folder.resolve() if all((folder / f).is_file() for f in files) else None


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_markers_are_valid():
    assert not MARKER_PROBLEMS, "\n".join(MARKER_PROBLEMS)


def test_every_page_with_code_is_collected():
    # The README's usage and the pages' examples: if none were found the parser is broken.
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/index.md", "docs/training.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_code_block_runs(block: Block, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("JAX_PLATFORMS", "cpu")  # the blocks are CPU-sized; do not fight over a GPU
    env.setdefault("MPLBACKEND", "Agg")
    for name in sorted(block.needs):
        folder = data_folder(name)
        if folder is None:
            variable = DATA_SETS[name][0]
            pytest.skip(f"needs the {name} data: set {variable} or put it in ../shared/data/{name}")
        env[DATA_SETS[name][0]] = str(folder)
    script = tmp_path / "block.py"
    script.write_text(block.script, encoding="utf-8")
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()
    try:
        result = subprocess.run(
            [sys.executable, script.name],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) else error.stdout or ""
        pytest.fail(
            f"{block.page} line {block.line}: still running after {BLOCK_TIMEOUT_S} s\n{output[-3000:]}"
        )
    seconds = time.perf_counter() - start
    print(f"{block.id} (line {block.line}): {seconds:.1f} s, {_children_cpu_seconds() - cpu_start:.1f} s CPU")
    if result.returncode != 0:
        pytest.fail(
            f"{block.page}, the Python block at line {block.line}, exited with status {result.returncode} "
            f"after {seconds:.0f} s:\n{result.stdout[-2000:]}\n{result.stderr[-6000:]}",
            pytrace=False,
        )


# --------------------------------------------------------------------------------------------------
# The site: strict build, every formula rendered to MathML


def _load_math_hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mathml_hook", REPO / "docs" / "hooks" / "mathml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# what must not survive into a rendered page, outside code, MathML, scripts and styles
_NOT_TEXT = re.compile(r"<(pre|code|math|script|style)\b[^>]*>.*?</\1>", re.DOTALL | re.IGNORECASE)
_RAW_MATH = {
    "$$": re.compile(r"\$\$"),
    r"\(": re.compile(r"\\\("),
    r"\)": re.compile(r"\\\)"),
    r"\[": re.compile(r"\\\["),
    r"\]": re.compile(r"\\\]"),
    r"\begin{": re.compile(r"\\begin\{"),
    "$...$": re.compile(r"\$[^$<>\n]+\$"),
}


def raw_math(page_html: str) -> list[str]:
    """Raw LaTeX left in the text of a built page: one line per find, with its context."""
    text = _NOT_TEXT.sub(" ", page_html)
    finds = []
    for name, pattern in _RAW_MATH.items():
        for match in pattern.finditer(text):
            context = html.unescape(text[max(0, match.start() - 60) : match.end() + 60])
            finds.append(f"{name}: …{' '.join(context.split())}…")
    return finds


def test_unknown_latex_is_a_build_warning(caplog):
    pytest.importorskip("latex2mathml", reason="the docs extra is not installed")
    hook = _load_math_hook()
    assert hook.to_mathml(r"\frac{a}{b} \mid x", False, "page.md").startswith("<math")
    # what Chromium's MathML Core would show wrongly: "~" for \sim, an italic N for \mathcal N
    mathml = hook.to_mathml(r"z \sim \mathcal N(0, \mathbf 1)", False, "page.md")
    assert "&#x0223C;" in mathml and "\U0001d4a9" in mathml and "mathvariant" not in mathml
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.mathml"):
        assert hook.to_mathml(r"\notacommand x", True, "page.md") is None
    assert "page.md" in caplog.text and r"\notacommand" in caplog.text
    assert raw_math('<p>an <span class="arithmatex">\\(x\\)</span> and $y$</p>')
    assert not raw_math("<p>costs <code>$HOME</code></p><math><mi>x</mi></math>")


def test_site_builds_and_every_formula_renders(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "latex2mathml"):
        pytest.importorskip(module, reason="the docs extra is not installed")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "WARNING" not in result.stderr, result.stderr[-6000:]
    pages = sorted(site.rglob("*.html"))
    problems, formulas = [], 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        formulas += text.count("<math ")
        problems += [
            f"{page.relative_to(site)}: {variant} (unsupported by MathML Core; use a Unicode letter)"
            for variant in re.findall(r'mathvariant="(?!normal")[^"]*"', text)
        ]
        problems += [f"{page.relative_to(site)}: {find}" for find in raw_math(text)]
    assert not problems, "raw LaTeX in the built site:\n" + "\n".join(problems)
    assert formulas > 100  # how-it-works.md alone has dozens
    assert not (site / "hooks").exists() and not (site / "javascripts").exists()
    shutil.rmtree(site)


def test_every_test_named_in_the_error_table_exists():
    """docs/errors.md promises a test per row: each `tests/...py::name` it cites must be defined."""
    table = (REPO / "docs" / "errors.md").read_text()
    cited = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table))
    assert len(cited) > 50
    missing = [
        f"{path}::{name}" for path, name in sorted(cited) if f"def {name}(" not in (REPO / path).read_text()
    ]
    assert not missing, f"docs/errors.md cites tests that do not exist: {missing}"
