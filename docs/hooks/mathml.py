"""MkDocs hook: render the site's math to MathML at build time, so that it needs no JavaScript.

`pymdownx.arithmatex` (generic mode) finds the math in the Markdown and in the docstrings that
mkdocstrings renders, and leaves it as ``<span class="arithmatex">\\(...\\)</span>`` (inline) or
``<div class="arithmatex">\\[...\\]</div>`` (display). This hook converts each of them, and the math
in the table of contents (headings with math), to MathML with the pure-Python `latex2mathml`.
Browsers render MathML natively, so the built site shows every formula with no network access and
no script.

A formula the converter cannot handle (an exception, or a command it does not know, which it
would otherwise pass through as the literal text ``\\foo``) is logged as a warning naming the page
and the LaTeX: ``mkdocs build --strict`` then fails. ``tests/test_docs.py`` also checks that no
raw LaTeX delimiters are left in the built pages.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.mathml")

# what arithmatex's generic mode writes (its default wrapper tags and delimiters)
_ARITHMATEX = re.compile(r'<(?P<tag>span|div) class="arithmatex">(?P<body>.*?)</(?P=tag)>', re.DOTALL)
_DELIMITERS = {"span": ("\\(", "\\)"), "div": ("\\[", "\\]")}
# inline math as it reaches a heading's table-of-contents title (tags stripped, text escaped)
_TOC_INLINE = re.compile(r"\\\((?P<tex>.+?)\\\)", re.DOTALL)
# `\text{log\_prior}`: latex2mathml keeps the backslash of an escaped character inside \text{}
_TEXT_ARGUMENT = re.compile(r"\\text\{((?:[^{}\\]|\\.)*)\}")
_ESCAPED_CHARACTER = re.compile(r"\\([_%&#$ ])")
# a command that latex2mathml did not know comes out as literal text
_UNCONVERTED_COMMAND = re.compile(r"\\[A-Za-z]+")
_TAG = re.compile(r"<[^>]+>")
# latex2mathml writes \sim as the identifier "~" (U+007E); it is the relation "∼" (U+223C)
_SIM = ("<mi>&#x0007E;</mi>", "<mo>&#x0223C;</mo>")
# \mathcal N, \mathbf 1, ... come out as mathvariant="script" etc., which MathML Core (Chromium)
# ignores; the Unicode mathematical alphanumeric characters render the same in every browser
_VARIANT = re.compile(r'<(?P<tag>mi|mn) mathvariant="(?P<variant>[a-z-]+)">(?P<text>[A-Za-z0-9]+)</(?P=tag)>')
_DIGITS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def _prepare(tex: str) -> str:
    return _TEXT_ARGUMENT.sub(lambda m: "\\text{" + _ESCAPED_CHARACTER.sub(r"\1", m.group(1)) + "}", tex)


def to_mathml(tex: str, display: bool, where: str) -> str | None:
    """Convert one formula (without delimiters) to MathML; on failure log a warning, return None."""
    try:
        mathml = convert(_prepare(tex), display="block" if display else "inline")
    except Exception as error:  # noqa: BLE001 - any converter failure is reported the same way
        log.warning(
            "%s: cannot convert the formula %r to MathML: %s: %s", where, tex, type(error).__name__, error
        )
        return None
    text = html.unescape(_TAG.sub("", mathml))
    unknown = sorted(set(_UNCONVERTED_COMMAND.findall(text)))
    if unknown:
        log.warning("%s: latex2mathml does not know %s in the formula %r", where, ", ".join(unknown), tex)
        return None
    return _unicode_variants(mathml.replace(*_SIM))


def _styled(character: str, variant: str) -> str | None:
    """``character`` in the Unicode mathematical ``variant`` ("script", "bold", ...), if there is one."""
    style = variant.upper().replace("-", " ").replace("DOUBLE STRUCK", "DOUBLE-STRUCK")
    if character.isdigit():
        name = f"{style} DIGIT {_DIGITS[int(character)]}"
    else:
        name = f"{style} {'CAPITAL' if character.isupper() else 'SMALL'} {character.upper()}"
    # the letters that predate the mathematical block keep their older names (ℬ, ℝ, ℭ, ℎ, ...)
    for candidate in (
        f"MATHEMATICAL {name}",
        name,
        name.replace("FRAKTUR", "BLACK-LETTER"),
        "PLANCK CONSTANT" if name == "ITALIC SMALL H" else "",
    ):
        try:
            return unicodedata.lookup(candidate)
        except KeyError:
            continue
    return None


def _unicode_variants(mathml: str) -> str:
    def replace(match: re.Match) -> str:
        if match.group("variant") == "normal":
            return match.group(0)  # MathML Core supports this one
        styled = [_styled(c, match.group("variant")) for c in match.group("text")]
        if None in styled:
            return match.group(0)
        return f"<{match.group('tag')}>{''.join(styled)}</{match.group('tag')}>"

    return _VARIANT.sub(replace, mathml)


def _strip(body: str, opening: str, closing: str) -> str:
    body = body.strip()
    if body.startswith(opening) and body.endswith(closing):
        body = body[len(opening) : -len(closing)]
    return body


def _convert_toc(items, where: str) -> None:
    for item in items:
        if "\\(" in item.title:
            item.title = _TOC_INLINE.sub(
                lambda m: to_mathml(html.unescape(m.group("tex")), False, where) or m.group(0),
                item.title,
            )
        _convert_toc(item.children, where)


def on_page_content(html_text: str, page, config, files) -> str:
    where = page.file.src_uri

    def replace(match: re.Match) -> str:
        tag = match.group("tag")
        tex = html.unescape(_strip(match.group("body"), *_DELIMITERS[tag]))
        mathml = to_mathml(tex, tag == "div", where)
        if mathml is None:
            return match.group(0)
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    _convert_toc(page.toc, where)
    return _ARITHMATEX.sub(replace, html_text)
