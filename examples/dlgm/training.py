r"""Algorithm 2 of the paper: one minibatch of L2HMC-DGLM training (and of its two baselines).

Per minibatch, each part with its own Adam optimiser (Levy et al. 2018, §5.2, learning rate 1e-3):

1. $z_0 \sim q_\psi(z \mid x)$; the ELBO updates the encoder ψ only;
2. $z_j = K_\theta(z_{j-1} \mid x)$, $j = 1..J$; $\mathcal L(\theta) = \sum_{j=1}^{J}
   \ell_\lambda(z_{j-1}, z'_j, A_j)$ updates the sampler θ only (gradients clipped at global
   norm 5), with λ the encoder's posterior sd (stop-gradient);
3. $-\log p_\phi(x, z_J)$ updates the decoder φ only.

The ``"vae"`` variant updates encoder and decoder on the ELBO; ``"hmc"`` runs step 2 with plain
HMC (fixed ε, nothing to train). The model is in ``model.py``.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §5.2 and Algorithm 2.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from model import DGLM, BernoulliDecoder, ChainResult, ConditionalSampler, elbo, l2hmc_chain, log_joint

__all__ = [
    "DGLMOptimizerStates",
    "DGLMOptimizers",
    "TrainMetrics",
    "init_optimizer_states",
    "l2hmc_sampler_loss",
    "make_optimizers",
    "train_step",
]


def l2hmc_sampler_loss(
    sampler: ConditionalSampler,
    decoder: BernoulliDecoder,
    rng_key: PRNGKeyArray,
    images: Float[Array, "batch pixels"],
    initial_positions: Float[Array, "batch d"],
    loss_scales: Float[Array, "batch d"],
    num_mh_steps: int,
) -> tuple[Float[Array, ""], ChainResult]:
    r"""The sampler's objective of Algorithm 2: ℓ_λ summed over all J steps, averaged over the batch.

    $$\mathcal L(\theta) = \frac{1}{B} \sum_{b=1}^{B} \sum_{j=1}^{J}
    \ell_{\lambda_b}(z^b_{j-1}, z'^b_j, A^b_j)$$

    (the released code trained on the last step only; the paper, §5.2, asks for all J). Differentiate with
    respect to ``sampler``; the decoder only defines the targets.

    Args:
        sampler: the conditional sampler θ.
        decoder: the decoder φ.
        rng_key: PRNG key (split into one key per image).
        images: the minibatch x, shape ``(batch, pixels)``.
        initial_positions: z₀ per image.
        loss_scales: λ² per image and latent dimension.
        num_mh_steps: J.

    Returns:
        ``(loss, chains)``, with the batched `ChainResult`.
    """

    def one_chain(key, image, initial_position, loss_scale):
        def logdensity_fn(latent):
            return log_joint(decoder, latent, image)

        return l2hmc_chain(key, sampler, logdensity_fn, image, initial_position, loss_scale, num_mh_steps)

    keys = jax.random.split(rng_key, images.shape[0])
    chains = jax.vmap(one_chain)(keys, images, initial_positions, loss_scales)
    return jnp.mean(jnp.sum(chains.step_losses, axis=1)), chains


class DGLMOptimizers(NamedTuple):
    """One Optax optimiser per part: encoder ψ, decoder φ, sampler θ."""

    encoder: optax.GradientTransformation
    decoder: optax.GradientTransformation
    sampler: optax.GradientTransformation


def make_optimizers(learning_rate: float = 1e-3, max_grad_norm: float = 5.0) -> DGLMOptimizers:
    """Adam for each part (paper §5.2: 1e-3); the sampler's gradients are clipped at global norm 5.

    A sampler step whose gradient is not finite is skipped (``optax.apply_if_finite``).
    """
    sampler = optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate)),
        max_consecutive_errors=1_000_000,
    )
    return DGLMOptimizers(optax.adam(learning_rate), optax.adam(learning_rate), sampler)


class DGLMOptimizerStates(NamedTuple):
    """The optimiser states of the three parts (``sampler`` is ``None`` without a sampler)."""

    encoder: optax.OptState
    decoder: optax.OptState
    sampler: optax.OptState | None


def init_optimizer_states(model: DGLM, optimizers: DGLMOptimizers) -> DGLMOptimizerStates:
    """Initial optimiser states for the trainable parts of ``model``."""
    sampler_state = None
    if model.sampler is not None:
        trainable = eqx.filter(model.sampler, model.sampler.trainable_filter())
        sampler_state = optimizers.sampler.init(trainable)
    return DGLMOptimizerStates(
        optimizers.encoder.init(eqx.filter(model.encoder, eqx.is_inexact_array)),
        optimizers.decoder.init(eqx.filter(model.decoder, eqx.is_inexact_array)),
        sampler_state,
    )


class TrainMetrics(NamedTuple):
    """Batch averages from one training step (NaN where a quantity does not apply).

    Attributes:
        elbo: the ELBO of q_ψ (a lower bound on log p_φ(x)).
        log_joint: log p_φ(x, z_J) at the chain's end point (the decoder's objective).
        sampler_loss: Σ_j ℓ_λ over the J steps (L2HMC only).
        acceptance_rate: mean MH acceptance probability over the J steps.
        step_size: ε of the kernel.
    """

    elbo: Float[Array, ""]
    log_joint: Float[Array, ""]
    sampler_loss: Float[Array, ""]
    acceptance_rate: Float[Array, ""]
    step_size: Float[Array, ""]


def _adam_step(optimizer, params, grads, opt_state, filter_spec=eqx.is_inexact_array):
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(params, filter_spec))
    return eqx.apply_updates(params, updates), opt_state


@eqx.filter_jit
def train_step(
    model: DGLM,
    opt_states: DGLMOptimizerStates,
    images: Float[Array, "batch pixels"],
    rng_key: PRNGKeyArray,
    optimizers: DGLMOptimizers,
) -> tuple[DGLM, DGLMOptimizerStates, TrainMetrics]:
    """One minibatch of Algorithm 2 (or of the VAE / HMC-DGLM baselines), compiled.

    Every gradient is taken at the parameters the step starts from; the three parts are then
    updated, each by its own optimiser.

    Args:
        model: the current model.
        opt_states: from `init_optimizer_states`.
        images: a minibatch of binarised images, shape ``(batch, pixels)``.
        rng_key: PRNG key.
        optimizers: from `make_optimizers`.

    Returns:
        The updated model, optimiser states and `TrainMetrics`.
    """
    batch_size = images.shape[0]
    dtype = model.decoder.output_layer.weight.dtype
    nan = jnp.asarray(jnp.nan, dtype)
    key_elbo, key_initial, key_chain = jax.random.split(rng_key, 3)
    keys_elbo = jax.random.split(key_elbo, batch_size)

    def negative_elbo(encoder, decoder):
        return -jnp.mean(jax.vmap(elbo, (0, None, None, 0))(keys_elbo, encoder, decoder, images))

    if model.variant == "vae":
        loss, (grad_encoder, grad_decoder) = eqx.filter_value_and_grad(lambda parts: negative_elbo(*parts))(
            (model.encoder, model.decoder)
        )
        encoder, encoder_state = _adam_step(
            optimizers.encoder, model.encoder, grad_encoder, opt_states.encoder
        )
        decoder, decoder_state = _adam_step(
            optimizers.decoder, model.decoder, grad_decoder, opt_states.decoder
        )
        model = eqx.tree_at(lambda m: (m.encoder, m.decoder), model, (encoder, decoder))
        metrics = TrainMetrics(-loss, nan, nan, nan, nan)
        return model, DGLMOptimizerStates(encoder_state, decoder_state, None), metrics

    # 1. The ELBO updates ψ only; z₀ ~ q_ψ(z | x) at the pre-update ψ starts the chains.
    loss, grad_encoder = eqx.filter_value_and_grad(lambda enc: negative_elbo(enc, model.decoder))(
        model.encoder
    )
    mean, log_sd = jax.vmap(model.encoder)(images)
    noise = jax.random.normal(key_initial, mean.shape, dtype)
    initial_positions = jax.lax.stop_gradient(mean + jnp.exp(log_sd) * noise)

    # 2. J MH steps; for L2HMC the loss summed over all J steps updates θ only.
    sampler, sampler_state = model.sampler, opt_states.sampler
    if model.variant == "l2hmc":
        filter_spec = model.sampler.trainable_filter()
        trainable, frozen = eqx.partition(model.sampler, filter_spec)

        loss_scales = jax.lax.stop_gradient(jnp.exp(2.0 * log_sd))  # λ² = the encoder's variance

        def sampler_objective(trainable):
            sampler = eqx.combine(trainable, frozen)
            return l2hmc_sampler_loss(
                sampler, model.decoder, key_chain, images, initial_positions, loss_scales, model.num_mh_steps
            )

        (sampler_loss, chains), grad_sampler = eqx.filter_value_and_grad(sampler_objective, has_aux=True)(
            trainable
        )
        sampler, sampler_state = _adam_step(
            optimizers.sampler, model.sampler, grad_sampler, opt_states.sampler, filter_spec
        )
        step_size = model.sampler.dynamics.step_size.astype(dtype)
    else:
        keys_chain = jax.random.split(key_chain, batch_size)
        chains = jax.vmap(model.run_chain)(keys_chain, images, initial_positions)
        sampler_loss = nan
        step_size = jnp.asarray(model.hmc_step_size, dtype)
    final_positions = jax.lax.stop_gradient(chains.position)

    # 3. The decoder maximises log p_φ(x, z_J) with z_J fixed.
    negative_log_joint, grad_decoder = eqx.filter_value_and_grad(
        lambda dec: -jnp.mean(jax.vmap(log_joint, (None, 0, 0))(dec, final_positions, images))
    )(model.decoder)

    encoder, encoder_state = _adam_step(optimizers.encoder, model.encoder, grad_encoder, opt_states.encoder)
    decoder, decoder_state = _adam_step(optimizers.decoder, model.decoder, grad_decoder, opt_states.decoder)
    model = eqx.tree_at(lambda m: (m.encoder, m.decoder), model, (encoder, decoder))
    if sampler is not None:
        model = eqx.tree_at(lambda m: m.sampler, model, sampler)
    metrics = TrainMetrics(
        -loss, -negative_log_joint, sampler_loss, jnp.mean(chains.acceptance_rate), step_size
    )
    return model, DGLMOptimizerStates(encoder_state, decoder_state, sampler_state), metrics
