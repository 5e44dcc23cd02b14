"""The DLGM example (``examples/dlgm``): exactness of the conditional kernel, the J-step loss, the script.

1. Exactness: on a linear-Gaussian latent model, z ~ N(0, I₃), x | z ~ N(W z + b, σ² I₅), the
   posterior p(z | x) is Gaussian and known. 2¹⁶ exact posterior draws, moved by 1 and by 3
   conditional L2HMC transitions with random (untrained, order-one) weights and the aux input of a
   fixed x, keep each coordinate's mean and variance within 5 standard errors (from the draws).
   Mutants, passed to the chain as its integrator: dropping log|det J|, or letting the aux input
   vary along the chain, must be caught.
2. The sampler's loss is ℓ_λ summed over all J steps: it equals an independent step-by-step
   reference, and differs from the released code's last-step-only loss.
3. The script answers ``--help`` at once and runs end to end with ``--smoke``.

Everything here runs in float64 (tests/conftest.py), except the example, which casts to float32.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2hmc_ppl
from l2hmc_ppl import learned_leapfrog
from l2hmc_ppl.training.loss import esjd_loss
from tests.mutants import dropped_log_det, randomize_heads
from tests.stats import Z_THRESHOLD, max_abs_z

import model as dlgm
import training

NUM_DRAWS = 2**16
LATENT, OBSERVED, NOISE_SD = 3, 5, 0.7

_rng = np.random.default_rng(8)
WEIGHT = _rng.normal(size=(OBSERVED, LATENT))
BIAS = _rng.normal(size=OBSERVED)
IMAGE = BIAS + WEIGHT @ np.array([1.0, -0.5, 0.3]) + NOISE_SD * _rng.normal(size=OBSERVED)

# The exact posterior N(μ, Σ): Σ = (I + WᵀW/σ²)⁻¹, μ = Σ Wᵀ(x − b)/σ².
POSTERIOR_COVARIANCE = np.linalg.inv(np.eye(LATENT) + WEIGHT.T @ WEIGHT / NOISE_SD**2)
POSTERIOR_MEAN = POSTERIOR_COVARIANCE @ WEIGHT.T @ (IMAGE - BIAS) / NOISE_SD**2


def log_posterior(latent):
    residual = jnp.asarray(IMAGE) - jnp.asarray(WEIGHT) @ latent - jnp.asarray(BIAS)
    return -0.5 * jnp.sum(latent**2) - 0.5 * jnp.sum(residual**2) / NOISE_SD**2


def random_sampler(seed: int = 3) -> dlgm.ConditionalSampler:
    """A conditional sampler on z ∈ R³ with 5-d conditioning input and order-one random heads."""
    sampler = dlgm.ConditionalSampler(
        LATENT,
        num_leapfrog_steps=3,
        hidden_size=12,
        encoder_hidden_size=6,
        step_size=0.25,
        image_size=OBSERVED,
        key=jax.random.key(seed),
        dtype=jnp.float64,
    )
    dynamics = randomize_heads(sampler.dynamics, jax.random.key(seed + 1), scale=0.5)
    return eqx.tree_at(lambda s: s.dynamics, sampler, dynamics)


def transitioned_draws(sampler, num_steps: int, seed: int = 0, integrator=learned_leapfrog):
    """2¹⁶ exact posterior draws after ``num_steps`` conditional L2HMC transitions (fixed x)."""
    chol = np.linalg.cholesky(POSTERIOR_COVARIANCE)
    loss_scale = jnp.asarray(np.diag(POSTERIOR_COVARIANCE))
    image = jnp.asarray(IMAGE)

    @jax.jit
    def run(key):
        key_draws, key_chains = jax.random.split(key)
        draws = POSTERIOR_MEAN + jax.random.normal(key_draws, (NUM_DRAWS, LATENT)) @ chol.T

        def one_chain(key, start):
            return dlgm.l2hmc_chain(
                key, sampler, log_posterior, image, start, loss_scale, num_steps, integrator
            )

        chains = jax.vmap(one_chain)(jax.random.split(key_chains, NUM_DRAWS), draws)
        return chains.position, chains.acceptance_rate.mean()

    return run(jax.random.key(seed))


@pytest.mark.parametrize("num_steps", [1, 3])
def test_conditional_kernel_keeps_the_posterior(num_steps):
    draws, acceptance = transitioned_draws(random_sampler(), num_steps)
    z = max_abs_z(draws, POSTERIOR_MEAN, np.diag(POSTERIOR_COVARIANCE))
    print(f"{num_steps} conditional L2HMC step(s): max |z| = {z:.2f}, acceptance {float(acceptance):.2f}")
    assert 0.05 < float(acceptance) < 0.99  # the proposals move and are sometimes rejected
    assert z < Z_THRESHOLD


def aux_follows_the_chain(
    dynamics, logdensity_fn, position, momentum, logdensity, grad, direction, aux=None, step_size=None
):
    """The conditioning input must be a function of x only; here it also depends on the current z,
    so the reverse move uses other networks than the forward one and F L is no involution."""
    aux = aux + 3.0 * jnp.tanh(2.0 * jnp.sum(position))
    return learned_leapfrog(
        dynamics, logdensity_fn, position, momentum, logdensity, grad, direction, aux, step_size
    )


@pytest.mark.parametrize("mutant", [dropped_log_det, aux_follows_the_chain])
def test_broken_conditional_kernels_are_detected(mutant):
    draws, _ = transitioned_draws(random_sampler(), num_steps=3, integrator=mutant)
    z = max_abs_z(draws, POSTERIOR_MEAN, np.diag(POSTERIOR_COVARIANCE))
    print(f"{mutant.__name__}: max |z| = {z:.2f}")
    assert z > Z_THRESHOLD


# ------------------------------------------------------------------------------------------------
# The loss over J steps


def small_model(num_mh_steps: int) -> dlgm.DGLM:
    model = dlgm.DGLM(
        "l2hmc",
        latent_size=4,
        hidden_size=16,
        num_mh_steps=num_mh_steps,
        num_leapfrog_steps=3,
        step_size=0.2,
        sampler_hidden_size=8,
        sampler_encoder_size=8,
        image_size=20,
        key=jax.random.key(0),
        dtype=jnp.float64,
    )
    dynamics = randomize_heads(model.sampler.dynamics, jax.random.key(1), scale=0.3)
    return eqx.tree_at(lambda m: m.sampler.dynamics, model, dynamics)


def reference_step_losses(model, rng_key, images, starts, loss_scales, num_mh_steps):
    """ℓ_λ of every step, one image and one step at a time from the package's `propose` and MH rule."""

    @jax.jit
    def one_step(step_key, state, image, loss_scale):
        def logdensity_fn(latent):
            return dlgm.log_joint(model.decoder, latent, image)

        key_proposal, key_accept = jax.random.split(step_key)
        aux = model.sampler.encode(image)
        proposal = l2hmc_ppl.propose(key_proposal, state, logdensity_fn, model.sampler.dynamics, aux)
        loss = esjd_loss(state.position, proposal.state.position, proposal.acceptance_probability, loss_scale)
        accept = jnp.log(jax.random.uniform(key_accept, dtype=jnp.float64)) < proposal.log_accept_ratio
        return loss, accept, proposal.state

    losses = np.zeros((images.shape[0], num_mh_steps))
    for b, key in enumerate(jax.random.split(rng_key, images.shape[0])):
        state = l2hmc_ppl.init(
            starts[b], lambda latent, b=b: dlgm.log_joint(model.decoder, latent, images[b])
        )
        for j, step_key in enumerate(jax.random.split(key, num_mh_steps)):
            loss, accept, proposed = one_step(step_key, state, images[b], loss_scales[b])
            losses[b, j] = float(loss)
            if bool(accept):
                state = proposed
    return losses


def test_sampler_loss_sums_all_mh_steps():
    num_mh_steps = 3
    model = small_model(num_mh_steps)
    key_images, key_starts, key_chain = jax.random.split(jax.random.key(5), 3)
    images = jax.random.bernoulli(key_images, 0.3, (4, 20)).astype(jnp.float64)
    starts = jax.random.normal(key_starts, (4, 4))
    loss_scales = jnp.full((4, 4), 0.25)

    loss, chains = jax.jit(training.l2hmc_sampler_loss, static_argnums=6)(
        model.sampler, model.decoder, key_chain, images, starts, loss_scales, num_mh_steps
    )
    reference = reference_step_losses(model, key_chain, images, starts, loss_scales, num_mh_steps)
    np.testing.assert_allclose(np.asarray(chains.step_losses), reference, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(loss), reference.sum(axis=1).mean(), rtol=1e-9)
    # The released code's bug: training on the last step only. It gives a different objective.
    last_step_only = reference[:, -1].mean()
    assert abs(float(loss) - last_step_only) > 1e-3 * abs(float(loss))
    assert np.all(np.asarray(chains.acceptance_rate) > 0)  # every step's proposal counts


def test_sampler_gradient_flows_through_every_step():
    """The gradient of the summed loss differs from that of the last step alone."""
    num_mh_steps = 2
    model = small_model(num_mh_steps)
    images = jax.random.bernoulli(jax.random.key(6), 0.3, (3, 20)).astype(jnp.float64)
    starts = jax.random.normal(jax.random.key(7), (3, 4))
    loss_scales = jnp.full((3, 4), 0.25)
    filter_spec = model.sampler.trainable_filter()
    trainable, frozen = eqx.partition(model.sampler, filter_spec)

    # The data are arguments of the compiled function, as in `train_step`.
    def objectives(trainable, images, starts):
        _, chains = training.l2hmc_sampler_loss(
            eqx.combine(trainable, frozen),
            model.decoder,
            jax.random.key(8),
            images,
            starts,
            loss_scales,
            num_mh_steps,
        )
        return jnp.stack([chains.step_losses.sum(axis=1).mean(), chains.step_losses[:, -1].mean()])

    jacobian = jax.jit(jax.jacrev(objectives))(trainable, images, starts)  # one compilation for both
    flat_all, _ = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda g: g[0], jacobian))
    flat_last, _ = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda g: g[1], jacobian))
    assert np.all(np.isfinite(flat_all))
    assert float(jnp.linalg.norm(flat_all - flat_last)) > 1e-3 * float(jnp.linalg.norm(flat_all))


def test_train_step_updates_each_part_and_keeps_the_masks():
    model = small_model(2)
    optimizers = training.make_optimizers()
    opt_states = training.init_optimizer_states(model, optimizers)
    images = jax.random.bernoulli(jax.random.key(9), 0.3, (8, 20)).astype(jnp.float64)
    new, _, metrics = training.train_step(model, opt_states, images, jax.random.key(10), optimizers)
    for value in metrics:
        assert np.isfinite(float(value))
    for part in (
        lambda m: m.encoder,
        lambda m: m.decoder,
        lambda m: m.sampler.image_encoder,
        lambda m: m.sampler.dynamics.position_net,
        lambda m: m.sampler.dynamics.log_step_size,
    ):
        before, _ = jax.flatten_util.ravel_pytree(eqx.filter(part(model), eqx.is_inexact_array))
        after, _ = jax.flatten_util.ravel_pytree(eqx.filter(part(new), eqx.is_inexact_array))
        assert not np.allclose(before, after)
    assert np.array_equal(model.sampler.dynamics.masks, new.sampler.dynamics.masks)
    assert float(new.sampler.dynamics.step_size_jitter) == 0.0  # the paper's fixed ε, not trained
    np.testing.assert_array_equal(
        model.sampler.dynamics.preconditioner_scale, new.sampler.dynamics.preconditioner_scale
    )


# ------------------------------------------------------------------------------------------------
# The script


def test_script_help_is_fast_and_names_the_data_folder(example_script):
    """``--help`` is parsed before JAX and the example's modules are imported."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(example_script), "--help"], capture_output=True, text=True, timeout=60
    )
    seconds = time.perf_counter() - start
    print(f"--help: {seconds:.2f} s")
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout and "L2HMC_PPL_MNIST" in result.stdout
    assert seconds < 10  # well under a second on an idle machine; JAX alone takes several


def test_script_smoke_run(example_script, mnist_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("dlgm_mnist_example", example_script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    start = time.perf_counter()
    results = example.main(["--smoke", "--data-dir", str(mnist_dir), "--out", str(tmp_path)])
    seconds = time.perf_counter() - start
    print(f"smoke run: {seconds:.0f} s")

    for name in (
        "results.json",
        "results.md",
        "dlgm_samples.png",
        "dlgm_inpainting.png",
        "dlgm_training.png",
    ):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["models"]) == {"vae", "hmc", "l2hmc"}
    for variant, entry in results["models"].items():
        for split in ("test", "train"):
            assert np.isfinite(entry[split]["log_likelihood"]["mean"]), variant
            # Better than the p = 1/2 pixel model (784 log 2 nats), which every trained model beats.
            assert -784 * np.log(2) < entry[split]["log_likelihood"]["mean"] < 0
    assert len(saved["differences"]) == 3
    assert "L2HMC-DGLM" in (tmp_path / "results.md").read_text()
