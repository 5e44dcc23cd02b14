"""Markdown tables and figures of a benchmark run.

Tables (``results.md``): ESS per MH step and per gradient evaluation of every sampler with the
paper's published value next to it; the ratio of each L2HMC configuration to every baseline (ESS
per gradient) and to the paper (ESS per step); mode mixing on the mixtures; the HMC ε grid; the
training cost. Figures: the autocorrelation against gradient evaluations (the paper's Fig. 1a),
chain traces on the mixtures (Fig. 1b/1d), and draws over the density of every 2-d target.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from l2hmc_ppl.targets import get_target

__all__ = ["SAMPLER_LABELS", "format_number", "markdown_tables", "write_figures", "write_markdown"]

#: How the samplers are named in tables and legends.
SAMPLER_LABELS: dict[str, str] = {
    "l2hmc_paper": "L2HMC (paper)",
    "l2hmc_tuned": "L2HMC (tuned)",
    "hmc_warm": "HMC (warm start)",
    "hmc": "HMC (best ε)",
    "nuts_diag": "NUTS (diag)",
    "nuts_dense": "NUTS (dense)",
    "chees": "ChEES-HMC",
}

_BASELINES = ("hmc", "nuts_diag", "nuts_dense", "chees", "hmc_warm")
_L2HMC = ("l2hmc_paper", "l2hmc_tuned")
_COLORS = {
    "l2hmc_paper": "tab:blue",
    "l2hmc_tuned": "tab:purple",
    "hmc_warm": "tab:pink",
    "hmc": "tab:orange",
    "nuts_diag": "tab:green",
    "nuts_dense": "tab:olive",
    "chees": "tab:red",
}


def format_number(value, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits; ``—`` for a missing, ``nan`` for a non-finite one."""
    if value is None:
        return "—"
    value = float(value)
    if not math.isfinite(value):
        return "nan"
    if value != 0 and (abs(value) >= 10**digits or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _setting(key: str, metrics: dict[str, Any]) -> str:
    details = metrics.get("details", {})
    if key in _L2HMC:
        return metrics["training"]["describe"] + f"; ε={format_number(details.get('step_size'))}"
    if key in ("hmc", "hmc_warm"):
        setting = f"M={details['num_leapfrog_steps']}, ε={format_number(details['step_size'])}"
        return setting + (", tuned L2HMC's warm start, no heads" if key == "hmc_warm" else "")
    if key.startswith("nuts"):
        return f"{details['num_warmup']} warm-up, median ε={format_number(details['median_step_size'])}"
    if key == "chees":
        return (
            f"{details['num_warmup']} adaptation, ε={format_number(details['step_size'])}, "
            f"mean L/ε={format_number(details['mean_num_leapfrog_steps'])}"
        )
    return ""


def _paper_value(key: str, paper: dict[str, Any] | None) -> str:
    if paper is None:
        return "—"
    if key in _L2HMC:
        return format_number(paper["l2hmc"])
    if key == "hmc":
        prefix = "≪ " if paper["hmc_is_upper_bound"] else ""
        return prefix + format_number(paper["hmc"])
    return "—"


def _seconds(timing: dict[str, float]) -> str:
    """Wall seconds with the compile share in parentheses, e.g. ``12.3 (4.5)``."""
    if not timing["wall"]:
        return "—"
    return f"{format_number(timing['wall'])} ({format_number(timing['compile'])})"


def markdown_tables(results: dict[str, Any]) -> str:
    """The tables of a run as Markdown (each under a ``###`` heading)."""
    targets = results["targets"]
    out = []

    rows = []
    for name, target in targets.items():
        for key, m in target["samplers"].items():
            rows.append(
                [
                    name,
                    SAMPLER_LABELS[key],
                    format_number(m["gradients_per_step"]),
                    format_number(m["acceptance_rate"], 2),
                    format_number(m["ess_per_step"]),
                    format_number(m["ess_per_gradient"]),
                    format_number(m["second_moment_ess_per_step"]),
                    format_number(m["robust_ess_per_gradient"]),
                    format_number(m["bulk_ess_per_step"]),
                    format_number(m["max_rhat"]),
                    _seconds(m["timing"]["adaptation"]),
                    _seconds(m["timing"]["sampling"]),
                    _paper_value(key, target["paper"]),
                    _setting(key, m),
                ]
            )
    out.append("### ESS (paper protocol)\n")
    header = ["target", "sampler", "grad/step", "accept", "ESS/step", "ESS/grad", "ESS/step (x²)"]
    header += ["min ESS/grad", "bulk ESS/step", "max R̂", "train/adapt s (compile)", "sample s (compile)"]
    header += ["paper ESS/step", "setting"]
    out.append(_table(header, rows))

    for metric, title in (
        ("ess_per_gradient", "the paper's ESS per gradient"),
        ("robust_ess_per_gradient", "min(ESS of x, ESS of (x − μ)²) per gradient"),
    ):
        rows = []
        for name, target in targets.items():
            samplers = target["samplers"]
            for key in _L2HMC:
                if key not in samplers:
                    continue
                m = samplers[key]
                row = [name, SAMPLER_LABELS[key], format_number(m[metric])]
                for baseline in _BASELINES:
                    other = samplers.get(baseline)
                    ratio = None if other is None else _ratio(m[metric], other[metric])
                    row.append("—" if other is None else format_number(ratio))
                if metric == "ess_per_gradient":
                    paper = target["paper"]
                    row.append(
                        "—" if paper is None else format_number(_ratio(m["ess_per_step"], paper["l2hmc"]))
                    )
                rows.append(row)
        header = ["target", "sampler", "ESS/grad" if metric == "ess_per_gradient" else "min ESS/grad"]
        header += [f"× {SAMPLER_LABELS[b]}" for b in _BASELINES]
        if metric == "ess_per_gradient":
            header.append("× paper L2HMC (ESS/step)")
        out.append(f"\n\n### Ratios of L2HMC to the baselines: {title}\n")
        out.append(_table(header, rows))

    rows = []
    for name, target in targets.items():
        for key, m in target["samplers"].items():
            if "modes" in m:
                modes = m["modes"]
                rows.append(
                    [
                        name,
                        SAMPLER_LABELS[key],
                        f"{modes['chains_visiting_all_modes']} / {m['num_chains']}",
                        str(modes.get("chains_switching", "—")),
                        format_number(modes["mean_switches_per_chain"]),
                        str(modes["min_switches_per_chain"]),
                    ]
                )
    if rows:
        out.append(
            "\n\n### Mode mixing (visits of the mode cores: radius = ¼ of the distance between modes)\n"
        )
        header = ["target", "sampler", "chains visiting all modes", "chains switching"]
        header += ["switches per chain", "fewest"]
        out.append(_table(header, rows))

    rows = []
    for name, target in targets.items():
        hmc = target["samplers"].get("hmc")
        if hmc is None:
            continue
        best = hmc["details"]["step_size"]
        for point in hmc["grid"]:
            marker = " (best)" if point["step_size"] == best else ""
            rows.append(
                [
                    name,
                    format_number(point["step_size"]) + marker,
                    format_number(point["acceptance_rate"], 2),
                    format_number(point["ess_per_step"]),
                ]
            )
    if rows:
        out.append("\n\n### HMC step-size grid (M as in the paper)\n")
        out.append(_table(["target", "ε", "accept", "ESS/step"], rows))

    rows = []
    for name, target in targets.items():
        for key in _L2HMC:
            m = target["samplers"].get(key)
            if m is None:
                continue
            training = m["training"]
            timing = training["timing"]
            rows.append(
                [
                    name,
                    SAMPLER_LABELS[key],
                    str(training["config"]["train"]["num_steps"]),
                    format_number(timing["wall"]),
                    format_number(timing["cpu"]),
                    format_number(timing["compile"]),
                    format_number(training["iterations_per_second"]),
                    format_number(training["final_acceptance_rate"], 2),
                    format_number(training["final_step_size"]),
                    str(training["num_skipped"]),
                ]
            )
    if rows:
        out.append("\n\n### L2HMC training\n")
        header = ["target", "sampler", "iterations", "wall s", "CPU s", "compile s", "it/s", "accept", "ε"]
        out.append(_table(header + ["skipped"], rows))
    return "\n".join(out) + "\n"


def _ratio(numerator, denominator) -> float | None:
    if numerator is None or denominator is None:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return None
    return numerator / denominator


def _loads(values) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def write_markdown(results: dict[str, Any], path: str | Path) -> None:
    """Write ``results.md``: how the run was made, then :func:`markdown_tables`."""
    machine = results["machine"]
    settings = results["settings"]
    lines = [
        "# L2HMC benchmark results",
        "",
        f"- command: `{results.get('command')}`",
        f"- date: {results['date']}, total wall time {format_number(results.get('total_wall_seconds'))} s",
        f"- machine: {machine['cpu']}, {machine['cpu_count']} cores, JAX {machine['jax']} "
        f"({machine['jax_backend']}: {', '.join(machine['devices'])}), NumPyro {machine['numpyro']}, "
        f"BlackJAX {machine['blackjax']}, Python {machine['python']}, x64={machine['x64']}",
        f"- load average (1, 5, 15 min) at the start: {_loads(machine['load_average'])}"
        + (f"; at the end: {_loads(machine['load_average_end'])}" if "load_average_end" in machine else ""),
        f"- protocol: {settings['num_chains']} chains from exact draws, {settings['num_eval_steps']} "
        f"measured transitions; NUTS {settings['num_nuts_warmup']} warm-up, ChEES "
        f"{settings['num_chees_warmup']} adaptation steps; seed {results['seed']}"
        + (" (**--quick: not meaningful**)" if settings["quick"] else ""),
    ]
    resumed = [name for name, target in results["targets"].items() if target.get("resumed")]
    if resumed:
        lines.append(f"- reused from an earlier, interrupted run (`--resume`): {', '.join(resumed)}")
    lines += [
        "",
        markdown_tables(results),
    ]
    Path(path).write_text("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Figures


def _density_grid(target, samples: np.ndarray, num: int = 160):
    low = np.percentile(samples, 0.2, axis=0)
    high = np.percentile(samples, 99.8, axis=0)
    pad = 0.15 * (high - low)
    low, high = low - pad, high + pad
    xs = np.linspace(low[0], high[0], num)
    ys = np.linspace(low[1], high[1], num)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    logdensity = np.asarray(jax.vmap(target.logdensity_fn)(jnp.asarray(grid, jnp.float32)))
    density = np.exp(logdensity - np.nanmax(logdensity)).reshape(num, num)
    return xs, ys, density, (low, high)


def _save(fig, path: Path, dpi: int) -> None:
    """Save ``fig`` as a PNG with a 256-colour palette (scatter plots shrink several-fold)."""
    from PIL import Image  # a dependency of matplotlib

    fig.savefig(path, dpi=dpi)
    with Image.open(path) as image:
        quantized = image.convert("RGB").quantize(colors=256)
    quantized.save(path, optimize=True)


def write_figures(
    results: dict[str, Any], kept_samples: dict[str, dict[str, np.ndarray]], out_dir
) -> list[Path]:
    """Write the figures and return their paths.

    - ``bench_autocorrelation.png``: ρ against gradient evaluations, one panel per target.
    - ``bench_traces.png``: for the mixtures run (the targets with modes), the path of one chain over
      the density and the first coordinate of three chains against the step.
    - ``bench_samples.png``: draws of every sampler over the density of each 2-d target.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    targets = results["targets"]

    # Autocorrelation against gradient evaluations (Fig. 1a).
    names = list(targets)
    if names:
        ncols = min(3, len(names))
        nrows = math.ceil(len(names) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            for key, m in targets[name]["samplers"].items():
                curve = m.get("autocorrelation")
                if curve is None:
                    continue
                ax.plot(
                    curve["lags_in_gradients"], curve["rho"], color=_COLORS[key], label=SAMPLER_LABELS[key]
                )
            ax.axhline(0.0, color="grey", lw=0.5)
            ax.axhline(0.05, color="grey", lw=0.5, ls=":")
            ax.set_title(name)
            ax.set_xlabel("gradient evaluations")
            ax.set_ylabel("autocorrelation ρ")
            ax.set_xlim(0, results["settings"]["max_lag_gradients"])
            ax.set_ylim(-0.3, 1.05)
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "bench_autocorrelation.png"
        _save(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)

    # Chain traces on the mixtures (Fig. 1b / 1d).
    mixtures = [
        n for n in names if n in kept_samples and len(kept_samples[n]) > 1 and get_target(n).modes is not None
    ]
    if mixtures:
        order = [k for k in ("l2hmc_paper", "l2hmc_tuned", "hmc", "nuts_diag", "nuts_dense", "chees")]
        fig, axes = plt.subplots(
            2 * len(mixtures), len(order), figsize=(3.0 * len(order), 5.4 * len(mixtures)), squeeze=False
        )
        for row, name in enumerate(mixtures):
            target = get_target(name)
            kept = kept_samples[name]
            xs, ys, density, _ = _density_grid(target, kept["_exact"])
            for col, key in enumerate(order):
                path_ax, trace_ax = axes[2 * row, col], axes[2 * row + 1, col]
                if key not in kept:
                    path_ax.axis("off")
                    trace_ax.axis("off")
                    continue
                samples = kept[key]
                path_ax.contour(xs, ys, density, levels=6, colors="grey", linewidths=0.5)
                steps = min(200, samples.shape[0])
                path_ax.plot(
                    samples[:steps, 0, 0], samples[:steps, 0, 1], "-o", ms=1.5, lw=0.5, color=_COLORS[key]
                )
                path_ax.set_title(f"{name}: {SAMPLER_LABELS[key]}", fontsize=9)
                path_ax.set_xlim(xs[0], xs[-1])
                path_ax.set_ylim(ys[0], ys[-1])
                steps = min(500, samples.shape[0])
                for chain in range(min(3, samples.shape[1])):
                    trace_ax.plot(np.arange(steps), samples[:steps, chain, 0], lw=0.6)
                trace_ax.set_xlabel("MH step")
                trace_ax.set_ylabel("x₁")
        fig.tight_layout()
        path = out_dir / "bench_traces.png"
        _save(fig, path, dpi=80)
        plt.close(fig)
        paths.append(path)

    # Draws over the density of the 2-d targets.
    two_d = [n for n in names if n in kept_samples and len(kept_samples[n]) > 1]
    if two_d:
        order = [k for k in SAMPLER_LABELS if any(k in kept_samples[n] for n in two_d)]
        fig, axes = plt.subplots(
            len(two_d), len(order), figsize=(2.8 * len(order), 2.8 * len(two_d)), squeeze=False
        )
        for row, name in enumerate(two_d):
            target = get_target(name)
            kept = kept_samples[name]
            xs, ys, density, _ = _density_grid(target, kept["_exact"])
            for col, key in enumerate(order):
                ax = axes[row, col]
                ax.contourf(xs, ys, density, levels=12, cmap="Greys")
                if key in kept:
                    samples = kept[key]
                    # 10 well-separated steps of every chain: 2000 points with the default protocol.
                    picks = np.linspace(samples.shape[0] // 2, samples.shape[0] - 1, 10).astype(int)
                    points = samples[picks].reshape(-1, 2)
                    ax.scatter(points[:, 0], points[:, 1], s=1.5, color=_COLORS[key], alpha=0.6)
                ax.set_xlim(xs[0], xs[-1])
                ax.set_ylim(ys[0], ys[-1])
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(SAMPLER_LABELS[key], fontsize=9)
                if col == 0:
                    ax.set_ylabel(name)
        fig.tight_layout()
        path = out_dir / "bench_samples.png"
        _save(fig, path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
