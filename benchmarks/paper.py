"""L2HMC against HMC, NUTS and ChEES-HMC with the paper's protocol (ESS per MH step and per gradient).

For every target it trains L2HMC with the paper's settings and with a tuned configuration (warm
start and a per-target number of leapfrog steps, or a hot temperature anneal on targets with
barriers), evaluates all samplers with the paper's protocol (200 chains from exact draws, 2000
measured transitions), and writes ``results.md`` (tables), ``results.json`` (everything),
``samples.npz`` (the 2-d draws) and the figures ``bench_*.png`` into ``--out``.

Usage::

    python benchmarks/paper.py                                # default targets, the paper's protocol
    python benchmarks/paper.py --targets scg,mog --out results/
    python benchmarks/paper.py --quick --out /tmp/b           # smoke test (about a minute)
    python benchmarks/paper.py --report-only --out results/   # redraw tables and figures
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the helpers are imported as `benchmarks._...`

from benchmarks._paper.names import DEFAULT_TARGETS, EXTRA_TARGETS, QUICK_TARGETS, SAMPLERS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--help`` needs no JAX)."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/paper.py",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--targets",
        default=None,
        help=f"comma-separated targets (default: {','.join(DEFAULT_TARGETS)}; with --quick: "
        f"{','.join(QUICK_TARGETS)}); 'extra' stands for {','.join(EXTRA_TARGETS)} and 'all' for both",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny runs, results not meaningful")
    parser.add_argument(
        "--out", default="benchmark_results", help="output folder (default: benchmark_results)"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    parser.add_argument(
        "--samplers", default=",".join(SAMPLERS), help=f"comma-separated subset of {','.join(SAMPLERS)}"
    )
    parser.add_argument("--num-chains", type=int, default=None, help="chains per sampler (default: 200)")
    parser.add_argument(
        "--num-eval-steps", type=int, default=None, help="measured transitions per chain (default: 2000)"
    )
    parser.add_argument(
        "--max-train-steps", type=int, default=None, help="cap on L2HMC training iterations (default: none)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="reuse the targets already in --out from an interrupted run"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite results.md and the figures in --out from its results.json and samples.npz",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or rebuild its report); returns the exit status."""
    args = build_parser().parse_args(argv)
    from benchmarks._paper.config import BenchmarkSettings, quick_settings
    from benchmarks._paper.names import resolve_targets
    from benchmarks._paper.run import rebuild_report, run_benchmark

    if args.report_only:
        rebuild_report(args.out)
        return 0
    settings = quick_settings() if args.quick else BenchmarkSettings()
    overrides = {
        "num_chains": args.num_chains,
        "num_eval_steps": args.num_eval_steps,
        "max_train_steps": args.max_train_steps,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    argv_list = sys.argv[1:] if argv is None else list(argv)
    run_benchmark(
        args.out,
        targets=resolve_targets(args.targets, quick=args.quick),
        settings=settings,
        samplers=tuple(s.strip() for s in args.samplers.split(",") if s.strip()),
        seed=args.seed,
        command=shlex.join(["python", "benchmarks/paper.py", *argv_list]),
        resume=args.resume,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
