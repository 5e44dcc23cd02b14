"""L2HMC-DGLM on MNIST: train a VAE, HMC-DGLM and L2HMC-DGLM, compare them by AIS (Levy et al. 2018, §5.2).

Trains the three deep latent Gaussian models of the paper's §5.2 with the same number of epochs
and the same initial encoder/decoder weights, evaluates log p(x) on held-out (and training) images
by annealed importance sampling, and writes to ``--out``:

- ``results.json``: the configuration, timings, per-epoch training metrics, per-image AIS estimates,
  means with standard errors and paired differences between the models;
- ``results.md``: the results table next to the paper's numbers;
- ``dlgm_samples.png``: decoder mean images of the three models for the same latent draws;
- ``dlgm_inpainting.png``: block-Gibbs in-painting of the top half of test digits with the
  L2HMC-DGLM's conditional sampler versus its encoder q_ψ;
- ``dlgm_training.png``: training curves;
- ``models/``: the trained models (``eqx.tree_serialise_leaves``) and their hyperparameters.

The paper's configuration (latent 50, 2 × 1024 softplus, batch 512, M = 10, 300 epochs, AIS with
10,000 annealing steps and 20 chains) needs a GPU; on a CPU use smaller settings and say so, e.g.

    python examples/dlgm/dlgm_mnist.py --out examples/outputs/dlgm_cpu \\
        --epochs 6 --hidden-size 256 --batch-size 128 --num-mh-steps 1 --num-leapfrog-steps 10 \\
        --ais-steps 300 --ais-chains 10 --eval-points 100

(36 minutes on two shared CPU cores; docs/dlgm.md reports that run). ``--smoke`` runs tiny
settings end to end (CI; one to two minutes on a CPU, most of it compiling).

The MNIST folder is ``--data-dir``, else the environment variable ``L2HMC_PPL_MNIST``, else
``../shared/data/mnist`` beside the repository. The model, Algorithm 2, the AIS estimator and the
MNIST loader are the modules beside this script (``model.py``, ``training.py``, ``ais.py``,
``mnist.py``), which it imports by their file names.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

#: Held-out / training log-likelihoods of the paper (Levy et al. 2018, §5.2, digitised from Fig. 2, nats).
PAPER = {
    "l2hmc": {1: (-84.28, -87.06), 2: (-80.93, -83.75), 5: (-80.90, -83.51), 7: (-80.84, -83.23)},
    "hmc": {1: (-84.69, -87.39), 2: (-81.61, -84.35), 5: (-81.51, -84.04), 7: (-81.19, -83.76)},
    "vae": (-82.9, -85.5),
}
NAMES = {"vae": "VAE", "hmc": "HMC-DGLM", "l2hmc": "L2HMC-DGLM"}
COLOURS = {"vae": "tab:gray", "hmc": "tab:blue", "l2hmc": "tab:orange"}

SMOKE = dict(
    epochs=1,
    latent_size=4,
    hidden_size=16,
    batch_size=64,
    num_mh_steps=2,
    num_leapfrog_steps=2,
    sampler_hidden_size=8,
    sampler_encoder_size=16,
    ais_steps=10,
    ais_chains=3,
    ais_leapfrog_steps=2,
    eval_points=6,
    num_train=256,
    gibbs_sweeps=4,
    gibbs_digits=2,
    classifier_steps=5,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the MNIST IDX files; if not given, $L2HMC_PPL_MNIST, "
        "else ../shared/data/mnist beside the repository",
    )
    parser.add_argument("--out", default="examples/outputs/dlgm", help="output folder")
    parser.add_argument("--models", default="vae,hmc,l2hmc", help="comma-separated subset of vae,hmc,l2hmc")
    parser.add_argument("--epochs", type=int, default=300, help="training epochs, the same for every model")
    parser.add_argument("--latent-size", type=int, default=50, help="d, the size of the latent z")
    parser.add_argument("--hidden-size", type=int, default=1024, help="encoder/decoder width")
    parser.add_argument("--batch-size", type=int, default=512, help="images per minibatch")
    parser.add_argument("--num-mh-steps", "-J", type=int, default=1, help="J, MH steps per minibatch")
    parser.add_argument("--num-leapfrog-steps", type=int, default=10, help="M, leapfrogs per MH step")
    parser.add_argument("--step-size", type=float, default=0.1, help="HMC's fixed ε, and L2HMC's initial ε")
    parser.add_argument(
        "--sampler-hidden-size", type=int, default=200, help="width of the L2HMC sampler's networks"
    )
    parser.add_argument(
        "--sampler-encoder-size",
        type=int,
        default=512,
        help="width of the image encoder that conditions the L2HMC sampler",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="Adam's rate for the encoder, decoder and sampler"
    )
    parser.add_argument("--ais-steps", type=int, default=10_000, help="annealing steps per image")
    parser.add_argument("--ais-chains", type=int, default=20, help="AIS chains per image")
    parser.add_argument(
        "--ais-leapfrog-steps", type=int, default=10, help="leapfrog steps of each AIS HMC transition"
    )
    parser.add_argument("--ais-batch", type=int, default=25, help="images per compiled AIS call")
    parser.add_argument(
        "--eval-points",
        type=int,
        default=1000,
        help="test images (and as many training images) evaluated by AIS",
    )
    parser.add_argument(
        "--eval-splits", default="test,train", help="splits evaluated by AIS: test, train or both"
    )
    parser.add_argument(
        "--num-train", type=int, default=None, help="use only the first N training images; if not given, all"
    )
    parser.add_argument("--gibbs-sweeps", type=int, default=100, help="block-Gibbs sweeps for in-painting")
    parser.add_argument("--gibbs-digits", type=int, default=16, help="test digits to in-paint")
    parser.add_argument("--gibbs-mh-steps", type=int, default=5, help="L2HMC steps per Gibbs sweep")
    parser.add_argument(
        "--classifier-steps",
        type=int,
        default=300,
        help="gradient steps of the softmax classifier that labels in-paintings",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and all random keys")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="load trained models from OUT/models instead of training, when present",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny settings end to end, for CI (overrides the settings above)"
    )
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.eval_splits = [s.strip() for s in args.eval_splits.split(",") if s.strip()]
    if not args.eval_splits or set(args.eval_splits) - {"test", "train"}:
        parser.error("--eval-splits must name test, train or both")
    unknown = set(args.models) - set(dlgm.VARIANTS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {dlgm.VARIANTS}")
    return args


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import model as dlgm  # noqa: E402
from mnist import ENV_VAR, binarize, load_mnist  # noqa: E402
from training import init_optimizer_states, make_optimizers, train_step  # noqa: E402

DTYPE = jnp.float32
TOP_HALF = np.arange(784) < 392  # rows 0..13 of the 28 × 28 image
#: The repository this script sits in (examples/dlgm/dlgm_mnist.py).
REPOSITORY = Path(__file__).resolve().parents[2]


def mnist_folder(data_dir: str | None) -> Path:
    """``--data-dir``, else ``$L2HMC_PPL_MNIST``, else ``../shared/data/mnist`` beside the repository."""
    if data_dir:
        return Path(data_dir)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return REPOSITORY.parent / "shared" / "data" / "mnist"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _number(value: float, spec: str) -> str:
    """``value`` formatted by ``spec``, or "n/a" as wide for a NaN (a column the VAE has no chain for)."""
    text = format(value, spec)
    return text if math.isfinite(value) else format("n/a", f">{len(text)}")


# --------------------------------------------------------------------------------------------------
# Training


def build_model(variant: str, args, mean_image) -> dlgm.DGLM:
    # The same key for every variant: the three models start from the same encoder and decoder.
    model = dlgm.DGLM(
        variant,
        latent_size=args.latent_size,
        hidden_size=args.hidden_size,
        num_mh_steps=args.num_mh_steps,
        num_leapfrog_steps=args.num_leapfrog_steps,
        step_size=args.step_size,
        sampler_hidden_size=args.sampler_hidden_size,
        sampler_encoder_size=args.sampler_encoder_size,
        key=jax.random.key(args.seed),
        dtype=DTYPE,
    )
    return eqx.tree_at(lambda m: m.decoder, model, model.decoder.with_output_bias(mean_image))


def train_model(variant: str, args, train_images, mean_image) -> tuple[dlgm.DGLM, dict]:
    model = build_model(variant, args, mean_image)
    optimizers = make_optimizers(args.learning_rate)
    opt_states = init_optimizer_states(model, optimizers)
    num_batches = train_images.shape[0] // args.batch_size
    key = jax.random.key(args.seed + 1)  # the same data order and binarisations for every variant
    history = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        key, key_binarize, key_order, key_steps = jax.random.split(key, 4)
        binary = binarize(key_binarize, train_images)  # dynamic binarisation, redrawn every epoch
        order = jax.random.permutation(key_order, train_images.shape[0])
        step_keys = jax.random.split(key_steps, num_batches)
        sums = None
        for step in range(num_batches):
            batch = binary[order[step * args.batch_size : (step + 1) * args.batch_size]]
            model, opt_states, metrics = train_step(model, opt_states, batch, step_keys[step], optimizers)
            sums = metrics if sums is None else jax.tree_util.tree_map(jnp.add, sums, metrics)
        means = {k: float(v) / num_batches for k, v in sums._asdict().items()}
        means["step_size"] = float(model.step_size)
        means.update(epoch=epoch + 1, seconds=time.perf_counter() - start)
        history.append(means)
        log(
            f"{NAMES[variant]:11s} epoch {epoch + 1:3d}/{args.epochs}  ELBO {means['elbo']:8.2f}  "
            f"log p(x,z_J) {_number(means['log_joint'], '8.2f')}  "
            f"acceptance {_number(means['acceptance_rate'], '.3f')}  "
            f"ε {_number(means['step_size'], '.4f')}  ({means['seconds']:.0f} s)"
        )
    return model, {"history": history, "train_seconds": time.perf_counter() - start}


def save_model(model: dlgm.DGLM, info: dict, folder: Path, variant: str, args) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(folder / f"{variant}.eqx", model)
    (folder / f"{variant}.json").write_text(json.dumps({"config": vars(args), **info}, indent=1))


def load_model(folder: Path, variant: str, args, mean_image):
    weights, meta = folder / f"{variant}.eqx", folder / f"{variant}.json"
    if not (weights.is_file() and meta.is_file()):
        return None
    template = build_model(variant, args, mean_image)
    model = eqx.tree_deserialise_leaves(weights, template)
    info = json.loads(meta.read_text())
    info.pop("config", None)
    return model, info


# --------------------------------------------------------------------------------------------------
# Evaluation


@eqx.filter_jit
def elbo_estimates(rng_key, model: dlgm.DGLM, images, num_samples: int = 10):
    """ELBO per image, averaged over ``num_samples`` draws of z ~ q_ψ."""
    keys = jax.random.split(rng_key, (images.shape[0], num_samples))
    per_draw = jax.vmap(jax.vmap(dlgm.elbo, (0, None, None, None)), (0, None, None, 0))
    return per_draw(keys, model.encoder, model.decoder, images).mean(axis=1)


def ais_estimates(model: dlgm.DGLM, images, args, seed: int) -> dict:
    """AIS log p(x) per image, in compiled chunks of ``--ais-batch`` images (the last one padded)."""
    num_images = images.shape[0]
    chunk = min(args.ais_batch, num_images)
    padded = -(-num_images // chunk) * chunk
    images = jnp.concatenate([images, images[: padded - num_images]])
    keys = jax.random.split(jax.random.key(seed), padded // chunk)  # the same keys for every model
    log_marginals, errors, acceptance = [], [], []
    for i in range(padded // chunk):
        result = dlgm.ais_log_likelihood(
            keys[i],
            model.decoder,
            images[i * chunk : (i + 1) * chunk],
            num_chains=args.ais_chains,
            num_annealing_steps=args.ais_steps,
            num_leapfrog_steps=args.ais_leapfrog_steps,
        )
        log_marginals.append(np.asarray(result.log_marginal))
        errors.append(np.asarray(result.standard_error))
        acceptance.append(np.asarray(result.acceptance_rate))
    return {
        "log_likelihood": np.concatenate(log_marginals)[:num_images].astype(float),
        "ais_standard_error": np.concatenate(errors)[:num_images].astype(float),
        "acceptance_rate": float(np.concatenate(acceptance)[:num_images].mean()),
    }


def evaluation_settings(args, num_eval: int) -> dict:
    """What the AIS numbers depend on besides the weights (a cache key for ``--reuse``)."""
    return {
        "num_eval_points": num_eval,
        "ais_steps": args.ais_steps,
        "ais_chains": args.ais_chains,
        "ais_leapfrog_steps": args.ais_leapfrog_steps,
        "seed": args.seed,
        "num_train": args.num_train,
    }


def summarise(values) -> dict:
    values = np.asarray(values, float)
    n = values.size
    return {
        "mean": float(values.mean()),
        "se": float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
    }


# --------------------------------------------------------------------------------------------------
# In-painting by block Gibbs, and a classifier to label what was painted


def train_classifier(images, labels, num_steps: int, seed: int):
    """Softmax regression on intensities (full batch, Adam); enough to name the digit (~92 %)."""
    import optax

    weights = (jnp.zeros((784, 10), DTYPE), jnp.zeros(10, DTYPE))
    optimizer = optax.adam(0.01)
    state = optimizer.init(weights)
    images, labels = jnp.asarray(images), jnp.asarray(labels)

    def loss(weights):
        logits = images @ weights[0] + weights[1]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels])

    @jax.jit
    def step(weights, state):
        grads = jax.grad(loss)(weights)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(weights, updates), state

    for _ in range(num_steps):
        weights, state = step(weights, state)
    return weights


@eqx.filter_jit
def inpaint(rng_key, model: dlgm.DGLM, images, num_sweeps: int, num_mh_steps: int, use_sampler: bool):
    """Block Gibbs on the top halves of ``images`` (a batch), each given its bottom half; see below."""
    keys = jax.random.split(rng_key, images.shape[0])
    return jax.vmap(lambda key, image: inpaint_one(key, model, image, num_sweeps, num_mh_steps, use_sampler))(
        keys, images
    )


def inpaint_one(rng_key, model: dlgm.DGLM, image, num_sweeps: int, num_mh_steps: int, use_sampler: bool):
    """Block Gibbs on the top half of ``image`` given its bottom half.

    Alternates z | x (``num_mh_steps`` L2HMC steps on p_φ(z | x) if ``use_sampler``, else a fresh
    draw z ~ q_ψ(z | x)) and x_top ~ p_φ(x_top | z). The top half starts as Bernoulli(½) noise.
    Returns the decoder mean of the top half pasted above the observed bottom half, per sweep.
    """
    top = jnp.asarray(TOP_HALF)
    key_init, key_latent, key_sweeps = jax.random.split(rng_key, 3)
    noise = jax.random.bernoulli(key_init, 0.5, image.shape).astype(image.dtype)
    image_start = jnp.where(top, noise, image)
    mean, log_sd = model.encoder(image_start)
    latent = mean + jnp.exp(log_sd) * jax.random.normal(key_latent, mean.shape, mean.dtype)

    def sweep(carry, key):
        current, latent = carry
        key_latent, key_pixels = jax.random.split(key)
        if use_sampler:
            latent = model.run_chain(key_latent, current, latent, num_mh_steps).position
        else:
            mean, log_sd = model.encoder(current)
            latent = mean + jnp.exp(log_sd) * jax.random.normal(key_latent, mean.shape, mean.dtype)
        probabilities = jax.nn.sigmoid(model.decoder(latent))
        pixels = jax.random.bernoulli(key_pixels, probabilities).astype(image.dtype)
        current = jnp.where(top, pixels, image)
        return (current, latent), jnp.where(top, probabilities, image)

    _, means = jax.lax.scan(sweep, (image_start, latent), jax.random.split(key_sweeps, num_sweeps))
    return means


# --------------------------------------------------------------------------------------------------
# Figures


def _tile(images, num_rows: int, num_columns: int) -> np.ndarray:
    images = np.asarray(images).reshape(num_rows, num_columns, 28, 28)
    return images.transpose(0, 2, 1, 3).reshape(num_rows * 28, num_columns * 28)


def plot_samples(models: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = 8
    latents = jax.random.normal(jax.random.key(args.seed + 7), (grid * grid, args.latent_size), DTYPE)
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.5), squeeze=False)
    for ax, (variant, model) in zip(axes[0], models.items(), strict=True):
        means = jax.nn.sigmoid(jax.vmap(model.decoder)(latents))
        ax.imshow(_tile(means, grid, grid), cmap="gray", vmin=0, vmax=1)
        ax.set_title(NAMES[variant])
        ax.axis("off")
    fig.suptitle("Decoder means σ(f_φ(z)), the same z ~ N(0, I) for every model", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_inpainting(paintings: dict, classes: dict, originals, num_digits: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_sweeps = paintings["l2hmc"].shape[1]
    shown = np.unique(np.linspace(0, num_sweeps - 1, min(num_sweeps, 12)).round().astype(int))
    fig, axes = plt.subplots(
        2 * num_digits, 1, figsize=(1.0 + 0.55 * (len(shown) + 1), 1.25 * 2 * num_digits)
    )
    axes = np.atleast_1d(axes)
    for digit in range(num_digits):
        for row, method in enumerate(("l2hmc", "q")):
            ax = axes[2 * digit + row]
            strip = np.concatenate([originals[digit][None], paintings[method][digit, shown]])
            ax.imshow(_tile(strip, 1, len(strip)), cmap="gray", vmin=0, vmax=1)
            labels = "".join(str(c) for c in classes[method][digit, shown])
            name = "L2HMC" if method == "l2hmc" else "q_ψ"
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            ax.set_xticks(28 * np.arange(len(strip)) + 14)
            ax.set_xticklabels(["data"] + list(labels), fontsize=7)
            ax.set_yticks([])
    fig.suptitle(
        f"Block-Gibbs in-painting of the top half (sweeps {shown[0] + 1}..{shown[-1] + 1}; "
        "tick = classifier label)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(infos: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for variant, info in infos.items():
        history = info["history"]
        epochs = [h["epoch"] for h in history]
        style = dict(marker=".", label=NAMES[variant], color=COLOURS[variant])
        axes[0].plot(epochs, [h["elbo"] for h in history], **style)
        if variant != "vae":
            axes[1].plot(epochs, [h["log_joint"] for h in history], **style)
            axes[2].plot(epochs, [h["acceptance_rate"] for h in history], **style)
    axes[0].set_title("training ELBO")
    axes[1].set_title("training log p(x, z_J)")
    axes[2].set_title("MH acceptance")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Results table


def markdown_table(results: dict, args) -> str:
    J = args.num_mh_steps
    splits = args.eval_splits
    header = "| model | epochs | train time (s) | " + " | ".join(f"{s} log p(x) (AIS)" for s in splits)
    lines = [
        header + " | test ELBO | paper test | paper train |" if "test" in splits else header + " |",
        "|---" * (3 + len(splits) + (3 if "test" in splits else 0)) + "|",
    ]
    for variant, r in results["models"].items():
        if variant == "vae":
            paper_train, paper_test = PAPER["vae"]
        else:
            paper_train, paper_test = PAPER[variant].get(J, (math.nan, math.nan))
        paper = [f"{v:.2f}" if math.isfinite(v) else "–" for v in (paper_test, paper_train)]
        cells = [NAMES[variant], str(r["epochs"]), f"{r['train_seconds']:.0f}"]
        cells += [
            f"{r[s]['log_likelihood']['mean']:.2f} ± {r[s]['log_likelihood']['se']:.2f}" for s in splits
        ]
        if "test" in splits:
            elbo = r["test"]["elbo"]
            cells += [f"{elbo['mean']:.2f} ± {elbo['se']:.2f}", paper[0], paper[1]]
        lines.append("| " + " | ".join(cells) + " |")
    if results["differences"]:
        lines += [
            "",
            "| paired difference (same images) | " + " | ".join(splits) + " |",
            "|---" * (1 + len(splits)) + "|",
        ]
        for name, d in results["differences"].items():
            lines.append(
                f"| {name} | " + " | ".join(f"{d[s]['mean']:+.2f} ± {d[s]['se']:.2f}" for s in splits) + " |"
            )
    lines += [
        "",
        f"AIS: {args.ais_chains} chains, {args.ais_steps} annealing steps (sigmoid schedule), "
        f"{args.ais_leapfrog_steps} leapfrogs per step, step size adapted to acceptance 0.65; "
        f"{results['num_eval_points']} images per split ({', '.join(splits)}). "
        "± is the standard error of the mean over images; the mean per-image AIS standard error is "
        + ", ".join(
            f"{NAMES[v]} {r[splits[0]]['mean_ais_standard_error']:.2f}" for v, r in results["models"].items()
        )
        + f" ({splits[0]}). Paper: J = "
        + f"{J}, 300 epochs, latent 50, 2 × 1024, AIS 10,000 steps × 20 chains.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    start_all = time.perf_counter()
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"devices: {jax.devices()}; settings: {vars(args)}")
    data_dir = mnist_folder(args.data_dir)
    log(f"MNIST from {data_dir}")
    train_images, train_labels = load_mnist(data_dir, "train")
    test_images, test_labels = load_mnist(data_dir, "test")
    if args.num_train is not None:
        train_images, train_labels = train_images[: args.num_train], train_labels[: args.num_train]
    mean_image = train_images.mean(axis=0)
    train_images = jnp.asarray(train_images)

    # Evaluation images: one fixed binarisation, the same for every model.
    num_eval = min(args.eval_points, test_images.shape[0], train_images.shape[0])
    key_test, key_train, key_pick = jax.random.split(jax.random.key(args.seed + 2), 3)
    eval_test = binarize(key_test, test_images[:num_eval])
    train_pick = np.asarray(jax.random.choice(key_pick, train_images.shape[0], (num_eval,), replace=False))
    eval_images = {"test": eval_test, "train": binarize(key_train, train_images[train_pick])}

    # With --reuse, AIS results of an earlier run with the same evaluation settings are kept.
    previous_path = out / "results.json"
    previous = json.loads(previous_path.read_text()) if args.reuse and previous_path.is_file() else {}
    same_evaluation = previous.get("evaluation") == evaluation_settings(args, num_eval)

    models, infos = {}, {}
    results = {
        "models": {},
        "differences": {},
        "num_eval_points": num_eval,
        "evaluation": evaluation_settings(args, num_eval),
        "reused_models": [],  # loaded by --reuse (their train_seconds are from the run that trained them)
    }
    for variant in args.models:
        loaded = load_model(out / "models", variant, args, mean_image) if args.reuse else None
        if loaded is not None:
            model, info = loaded
            results["reused_models"].append(variant)
            log(f"{NAMES[variant]}: loaded from {out / 'models'}")
        else:
            log(f"{NAMES[variant]}: training for {args.epochs} epochs")
            model, info = train_model(variant, args, train_images, mean_image)
            save_model(model, info, out / "models", variant, args)
        models[variant], infos[variant] = model, info

        step_size = None if variant == "vae" else model.step_size  # the VAE has no MCMC kernel
        entry = {"epochs": args.epochs, "train_seconds": info["train_seconds"], "step_size": step_size}
        reused = variant in results["reused_models"]
        cached = previous.get("models", {}).get(variant, {}) if same_evaluation and reused else {}
        start = time.perf_counter()
        for split in args.eval_splits:
            if split in cached:  # --reuse with the same evaluation settings: keep the AIS results
                entry[split] = cached[split]
                continue
            images = eval_images[split]
            ais = ais_estimates(model, images, args, seed=args.seed + 3)
            elbos = np.asarray(elbo_estimates(jax.random.key(args.seed + 4), model, images), float)
            entry[split] = {
                "log_likelihood": summarise(ais["log_likelihood"]),
                "mean_ais_standard_error": float(np.mean(ais["ais_standard_error"])),
                "ais_acceptance_rate": ais["acceptance_rate"],
                "elbo": summarise(elbos),
                "per_image_log_likelihood": ais["log_likelihood"].tolist(),
                "per_image_ais_standard_error": ais["ais_standard_error"].tolist(),
                "per_image_elbo": elbos.tolist(),
            }
        entry["ais_seconds"] = cached.get("ais_seconds", 0.0) + time.perf_counter() - start
        results["models"][variant] = entry
        log(
            f"{NAMES[variant]}: "
            + ", ".join(
                f"{split} log p(x) {entry[split]['log_likelihood']['mean']:.2f} ± "
                f"{entry[split]['log_likelihood']['se']:.2f}"
                for split in args.eval_splits
            )
            + f" (AIS {entry['ais_seconds']:.0f} s)"
        )

    for better, worse in (("l2hmc", "hmc"), ("hmc", "vae"), ("l2hmc", "vae")):
        if better in results["models"] and worse in results["models"]:
            results["differences"][f"{NAMES[better]} − {NAMES[worse]}"] = {
                split: summarise(
                    np.subtract(
                        results["models"][better][split]["per_image_log_likelihood"],
                        results["models"][worse][split]["per_image_log_likelihood"],
                    )
                )
                for split in args.eval_splits
            }

    # Figures.
    plot_samples(models, args, out / "dlgm_samples.png")
    plot_training(infos, out / "dlgm_training.png")
    if "l2hmc" in models:
        log("in-painting by block Gibbs")
        classifier = train_classifier(train_images, train_labels, args.classifier_steps, args.seed)
        num_digits = min(args.gibbs_digits, num_eval)
        originals = np.asarray(eval_test[:num_digits])
        paintings, classes, switches = {}, {}, {}
        for method, use_sampler in (("l2hmc", True), ("q", False)):
            paintings[method] = np.asarray(
                inpaint(
                    jax.random.key(args.seed + 5),
                    models["l2hmc"],
                    eval_test[:num_digits],
                    args.gibbs_sweeps,
                    args.gibbs_mh_steps,
                    use_sampler,
                )
            )
            logits = paintings[method] @ np.asarray(classifier[0]) + np.asarray(classifier[1])
            classes[method] = logits.argmax(-1)
            # Statistics after a burn-in of a tenth of the sweeps (the top half starts as noise).
            kept = classes[method][:, args.gibbs_sweeps // 10 :]
            changes = (np.diff(kept, axis=1) != 0).sum(axis=1)
            switches[method] = {
                "class_changes_per_sweep": float(changes.mean() / max(kept.shape[1] - 1, 1)),
                "mean_distinct_classes": float(np.mean([len(set(row)) for row in kept])),
                "fraction_of_digits_that_change_class": float(np.mean(changes > 0)),
            }
        results["inpainting"] = {
            "num_digits": num_digits,
            "num_sweeps": args.gibbs_sweeps,
            "l2hmc_mh_steps_per_sweep": args.gibbs_mh_steps,
            "burn_in_sweeps": args.gibbs_sweeps // 10,
            **switches,
        }
        log(f"in-painting class switching: {switches}")
        plot_inpainting(paintings, classes, originals, min(num_digits, 4), out / "dlgm_inpainting.png")

    results["config"] = vars(args)
    results["total_seconds"] = time.perf_counter() - start_all
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown_table(results, args)
    (out / "results.md").write_text(table)
    print(table)
    log(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
