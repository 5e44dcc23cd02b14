r"""The L2HMC deep latent Gaussian model (L2HMC-DGLM) of Levy et al. 2018, §5.2, with its two baselines.

The generative model is a deep latent Gaussian model (DGLM) on binarised images $x \in \{0,1\}^{784}$:

$$z \sim \mathcal N(0, I_d), \qquad x \mid z \sim \mathrm{Bernoulli}(\sigma(f_\phi(z))),$$

with $f_\phi$ the decoder (an MLP with softplus hidden layers). Three ways to train it, one
module `DGLM` with a ``variant``:

- ``"vae"``: a variational auto-encoder; encoder $q_\psi(z \mid x)$ (diagonal Gaussian) and decoder
  both maximise the ELBO.
- ``"hmc"`` (HMC-DGLM): the encoder is trained on the ELBO (ψ only); $z_0 \sim q_\psi(z \mid x)$ is
  moved by J transitions of plain HMC (fixed ε, untrained) on the posterior
  $p_\phi(z \mid x) \propto p(z)\, p_\phi(x \mid z)$; the decoder maximises $\log p_\phi(x, z_J)$
  with $z_J$ held fixed.
- ``"l2hmc"`` (L2HMC-DGLM, Algorithm 2 of the paper): as ``"hmc"``, but the J transitions use an
  L2HMC kernel conditioned on the image (the image is encoded by a two-layer softplus network whose
  output is embedded into the first layer of both the position and the momentum network), and the
  sampler θ is trained at the same time on the L2HMC loss $\ell_\lambda$ **summed over all J
  steps**, with the per-dimension λ of the loss the encoder's posterior sd (stop-gradient).

This module holds the model, its densities, the two kinds of chains and the evaluation;
``training.py`` holds Algorithm 2, per minibatch, each part with its own Adam optimiser:

1. $z_0 \sim q_\psi(z \mid x)$; the ELBO updates ψ only;
2. $z_j = K_\theta(z_{j-1} \mid x)$, $j = 1..J$; $\mathcal L(\theta) = \sum_{j=1}^{J}
   \ell_\lambda(z_{j-1}, z'_j, A_j)$ updates θ only (gradients clipped at global norm 5);
3. $-\log p_\phi(x, z_J)$ updates φ only.

The aux (image) input is fixed along a chain, so each conditional transition is an exact MH step
for $p_\phi(z \mid x)$ for any weights, like the unconditional kernel. Between MH steps the chain
state is cut from the gradient (each step's loss measures that step's proposal, as in Algorithm 1).

Evaluation: the held-out log-likelihood $\log p_\phi(x)$ by annealed importance sampling
(`ais_log_likelihood`, a per-data-point wrapper of ``ais.ais_log_marginal``).

Part of the L2HMC-DGLM example (``examples/dlgm``), built on the library's dynamics and kernel;
the example's modules import each other by their file names, so ``examples/dlgm`` must be on
``sys.path`` (it is when the script runs).

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §5.2 and Algorithm 2.
    M. D. Hoffman. *Learning deep latent Gaussian models with Markov chain Monte Carlo*. ICML 2017
    (the HMC-DGLM baseline).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from l2hmc_ppl.core import Integrator, L2HMCState, learned_leapfrog, metropolis_accept, propose
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.dynamics.networks import init_linear
from l2hmc_ppl.training.loss import esjd_loss

from ais import AISResult, ais_log_marginal

__all__ = [
    "IMAGE_SIZE",
    "VARIANTS",
    "BernoulliDecoder",
    "ChainResult",
    "ConditionalSampler",
    "DGLM",
    "GaussianEncoder",
    "ais_log_likelihood",
    "elbo",
    "hmc_chain",
    "l2hmc_chain",
    "log_joint",
    "log_prior",
]

#: The three ways of training the decoder: ELBO only, HMC-DGLM, L2HMC-DGLM.
VARIANTS = ("vae", "hmc", "l2hmc")

#: 28 × 28 MNIST images, flattened.
IMAGE_SIZE = 784


# Softplus layers start with He (fan-in, scale 2) weights and zero biases. With Equinox's default
# uniform ±1/√fan_in weights the softplus networks are almost linear at first and the VAE's
# posterior collapses onto the prior for the first thousand steps or so; the heads use scale 1.
_HIDDEN_INIT_SCALE = 2.0
_HEAD_INIT_SCALE = 1.0


def _softplus_layers(in_size: int, hidden_size: int, num_layers: int, *, key, dtype) -> tuple:
    keys = jax.random.split(key, num_layers)
    sizes = [in_size] + [hidden_size] * num_layers
    return tuple(
        init_linear(sizes[i], sizes[i + 1], _HIDDEN_INIT_SCALE, key=keys[i], dtype=dtype)
        for i in range(num_layers)
    )


def _apply_softplus(layers, inputs):
    hidden = inputs
    for layer in layers:
        hidden = jax.nn.softplus(layer(hidden))
    return hidden


class GaussianEncoder(eqx.Module):
    """The approximate posterior q_ψ(z | x) = N(μ_ψ(x), diag σ_ψ(x)²): softplus MLP, two heads.

    Args:
        latent_size: d, the size of z (50 in the paper).
        hidden_size: width of the hidden layers (1024 in the paper).
        num_hidden_layers: softplus layers (2 in the paper).
        image_size: size of the flattened image.
        key: PRNG key for the weights.
        dtype: floating dtype of the weights.
    """

    hidden_layers: tuple[eqx.nn.Linear, ...]
    mean_head: eqx.nn.Linear
    log_sd_head: eqx.nn.Linear

    def __init__(
        self,
        latent_size: int,
        hidden_size: int = 1024,
        *,
        num_hidden_layers: int = 2,
        image_size: int = IMAGE_SIZE,
        key: PRNGKeyArray,
        dtype=None,
    ):
        dtype = jnp.result_type(float) if dtype is None else dtype
        key_hidden, key_mean, key_sd = jax.random.split(key, 3)
        self.hidden_layers = _softplus_layers(
            image_size, hidden_size, num_hidden_layers, key=key_hidden, dtype=dtype
        )
        self.mean_head = init_linear(hidden_size, latent_size, _HEAD_INIT_SCALE, key=key_mean, dtype=dtype)
        self.log_sd_head = init_linear(hidden_size, latent_size, _HEAD_INIT_SCALE, key=key_sd, dtype=dtype)

    def __call__(self, image: Float[Array, " pixels"]) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """Return the posterior mean μ_ψ(x) and log-sd log σ_ψ(x)."""
        hidden = _apply_softplus(self.hidden_layers, image)
        return self.mean_head(hidden), self.log_sd_head(hidden)


class BernoulliDecoder(eqx.Module):
    """The likelihood p_φ(x | z) = Π Bernoulli(x_i; σ(f_φ(z)_i)): softplus MLP to pixel logits.

    Args:
        latent_size: d, the size of z.
        hidden_size: width of the hidden layers (1024 in the paper).
        num_hidden_layers: softplus layers (2 in the paper).
        image_size: number of pixels.
        key: PRNG key for the weights.
        dtype: floating dtype of the weights.
    """

    hidden_layers: tuple[eqx.nn.Linear, ...]
    output_layer: eqx.nn.Linear

    def __init__(
        self,
        latent_size: int,
        hidden_size: int = 1024,
        *,
        num_hidden_layers: int = 2,
        image_size: int = IMAGE_SIZE,
        key: PRNGKeyArray,
        dtype=None,
    ):
        dtype = jnp.result_type(float) if dtype is None else dtype
        key_hidden, key_out = jax.random.split(key)
        self.hidden_layers = _softplus_layers(
            latent_size, hidden_size, num_hidden_layers, key=key_hidden, dtype=dtype
        )
        self.output_layer = init_linear(hidden_size, image_size, _HEAD_INIT_SCALE, key=key_out, dtype=dtype)

    def __call__(self, latent: Float[Array, " d"]) -> Float[Array, " pixels"]:
        """Return the pixel logits f_φ(z); the decoder mean image is their sigmoid."""
        return self.output_layer(_apply_softplus(self.hidden_layers, latent))

    def log_likelihood(self, latent: Float[Array, " d"], image: Float[Array, " pixels"]) -> Float[Array, ""]:
        """log p_φ(x | z) = Σᵢ xᵢ fᵢ − softplus(fᵢ) (Bernoulli with logits f = f_φ(z))."""
        logits = self(latent)
        return jnp.sum(image * logits - jax.nn.softplus(logits))

    def with_output_bias(self, mean_image: Float[Array, " pixels"]) -> BernoulliDecoder:
        """A copy whose output bias is logit(mean pixel intensity): the decoder starts at the data mean."""
        mean_image = jnp.clip(jnp.asarray(mean_image, self.output_layer.bias.dtype), 1e-3, 1 - 1e-3)
        return eqx.tree_at(lambda d: d.output_layer.bias, self, jnp.log(mean_image) - jnp.log1p(-mean_image))


class ConditionalSampler(eqx.Module):
    """An L2HMC sampler θ for p_φ(z | x) conditioned on the image x (Levy et al. 2018, §5.2).

    The image goes through a softplus encoder (2 × 512 in the paper); its output is the auxiliary
    input of the dynamics, which both the position and the momentum network embed and add into their
    first layer. The aux input is a function of x only, fixed along a chain, so every transition is
    exact for p_φ(z | x).

    Args:
        latent_size: d, the size of z.
        num_leapfrog_steps: M, learned leapfrog steps per MH step (10 in the paper).
        hidden_size: width of the networks' trunks (200 in the paper).
        encoder_hidden_size: width of the image encoder (512 in the paper); also the aux size.
        num_encoder_layers: softplus layers of the image encoder (2 in the paper).
        num_hidden_layers: ReLU layers after the summed embedding (1: a 2-layer trunk).
        step_size: initial ε (trainable; not jittered, as in the paper).
        image_size: number of pixels.
        key: PRNG key.
        dtype: floating dtype of the weights.
    """

    image_encoder: tuple[eqx.nn.Linear, ...]
    dynamics: L2HMCDynamics

    def __init__(
        self,
        latent_size: int,
        *,
        num_leapfrog_steps: int = 10,
        hidden_size: int = 200,
        encoder_hidden_size: int = 512,
        num_encoder_layers: int = 2,
        num_hidden_layers: int = 1,
        step_size: float = 0.1,
        image_size: int = IMAGE_SIZE,
        key: PRNGKeyArray,
        dtype=None,
    ):
        dtype = jnp.result_type(float) if dtype is None else dtype
        key_encoder, key_dynamics = jax.random.split(key)
        self.image_encoder = _softplus_layers(
            image_size, encoder_hidden_size, num_encoder_layers, key=key_encoder, dtype=dtype
        )
        self.dynamics = L2HMCDynamics(
            latent_size,
            num_leapfrog_steps=num_leapfrog_steps,
            hidden_size=hidden_size,
            step_size=step_size,
            step_size_jitter=0.0,  # the paper's fixed ε: no jitter
            num_hidden_layers=num_hidden_layers,
            aux_size=encoder_hidden_size,
            key=key_dynamics,
            dtype=dtype,
        )

    def encode(self, image: Float[Array, " pixels"]) -> Float[Array, " aux"]:
        """The aux input of the dynamics for this image."""
        return _apply_softplus(self.image_encoder, image)

    def trainable_filter(self) -> ConditionalSampler:
        """Booleans marking what training updates: the image encoder, the networks and ε."""
        spec = jax.tree_util.tree_map(eqx.is_inexact_array, self)
        return eqx.tree_at(lambda s: s.dynamics, spec, self.dynamics.trainable_filter())


# ------------------------------------------------------------------------------------------------
# Densities


def log_prior(latent: Float[Array, " d"]) -> Float[Array, ""]:
    """log N(z; 0, I), normalised."""
    return -0.5 * jnp.sum(latent**2) - 0.5 * latent.shape[-1] * math.log(2.0 * math.pi)


def log_joint(
    decoder: BernoulliDecoder, latent: Float[Array, " d"], image: Float[Array, " pixels"]
) -> Float[Array, ""]:
    """log p_φ(x, z) = log p_φ(x | z) + log p(z): the unnormalised log posterior of z given x."""
    return decoder.log_likelihood(latent, image) + log_prior(latent)


def elbo(
    rng_key: PRNGKeyArray,
    encoder: GaussianEncoder,
    decoder: BernoulliDecoder,
    image: Float[Array, " pixels"],
) -> Float[Array, ""]:
    """One-sample reparameterised ELBO, E_q[log p_φ(x | z)] − KL(q_ψ(z | x) ‖ N(0, I)), KL exact."""
    mean, log_sd = encoder(image)
    noise = jax.random.normal(rng_key, mean.shape, mean.dtype)
    latent = mean + jnp.exp(log_sd) * noise
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(2.0 * log_sd) - 1.0 - 2.0 * log_sd)
    return decoder.log_likelihood(latent, image) - kl


# ------------------------------------------------------------------------------------------------
# The J MH steps


class ChainResult(NamedTuple):
    """J MH steps from one starting point.

    Attributes:
        position: z_J, the last state of the chain.
        step_losses: ℓ_λ of each step's proposal, shape ``(J,)`` (zeros for HMC).
        acceptance_rate: A of each step's proposal, shape ``(J,)``.
    """

    position: Float[Array, " d"]
    step_losses: Float[Array, " J"]
    acceptance_rate: Float[Array, " J"]


def l2hmc_chain(
    rng_key: PRNGKeyArray,
    sampler: ConditionalSampler,
    logdensity_fn: Callable[[Float[Array, " d"]], Float[Array, ""]],
    image: Float[Array, " pixels"],
    initial_position: Float[Array, " d"],
    loss_scale: Float[Array, " d"],
    num_mh_steps: int,
    integrator: Integrator = learned_leapfrog,
) -> ChainResult:
    """Run J conditional L2HMC transitions on ``logdensity_fn`` and record ℓ_λ of every step.

    Each step is the library kernel's transition (``l2hmc_ppl.propose``, then
    ``l2hmc_ppl.core.metropolis_accept`` with the same key split as ``l2hmc_ppl.build_kernel``),
    with aux = ``sampler.encode(image)`` computed once and fixed along the chain. The per-step
    losses are differentiable in the sampler; the chain state is cut from the gradient between
    steps.

    Args:
        rng_key: PRNG key.
        sampler: the conditional sampler θ.
        logdensity_fn: the target, log p_φ(z | x) up to a constant (for the DGLM
            ``lambda z: log_joint(decoder, z, image)``).
        image: x, the conditioning input of the sampler.
        initial_position: z₀ (e.g. a draw from q_ψ(z | x)).
        loss_scale: λ² per latent dimension (the encoder's posterior variance).
        num_mh_steps: J.
        integrator: the map L_θ, passed on to ``propose`` (the tests pass broken ones).

    Returns:
        A `ChainResult`; the training loss is ``step_losses.sum()``.
    """
    aux = sampler.encode(image)

    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(initial_position)
    state = L2HMCState(initial_position, logdensity, logdensity_grad)

    def one_step(state, key):
        key_proposal, key_accept = jax.random.split(key)
        proposal = propose(key_proposal, state, logdensity_fn, sampler.dynamics, aux, integrator)
        loss = esjd_loss(state.position, proposal.state.position, proposal.acceptance_probability, loss_scale)
        state, _ = metropolis_accept(key_accept, proposal.log_accept_ratio, proposal.state, state)
        return jax.lax.stop_gradient(state), (loss, proposal.acceptance_probability)

    state, (losses, acceptance) = jax.lax.scan(one_step, state, jax.random.split(rng_key, num_mh_steps))
    return ChainResult(state.position, losses, acceptance)


def hmc_chain(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[Float[Array, " d"]], Float[Array, ""]],
    initial_position: Float[Array, " d"],
    step_size: float,
    num_leapfrog_steps: int,
    num_mh_steps: int,
) -> ChainResult:
    """Run J plain HMC transitions (BlackJAX, velocity Verlet, identity mass) on ``logdensity_fn``."""
    kernel = blackjax.mcmc.hmc.build_kernel()
    dtype = initial_position.dtype
    inverse_mass_matrix = jnp.ones(initial_position.shape, dtype)

    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(initial_position)
    state = blackjax.mcmc.hmc.HMCState(initial_position, logdensity, logdensity_grad)

    def one_step(state, key):
        state, info = kernel(
            key, state, logdensity_fn, jnp.asarray(step_size, dtype), inverse_mass_matrix, num_leapfrog_steps
        )
        return state, info.acceptance_rate.astype(dtype)

    state, acceptance = jax.lax.scan(one_step, state, jax.random.split(rng_key, num_mh_steps))
    return ChainResult(state.position, jnp.zeros_like(acceptance), acceptance)


# ------------------------------------------------------------------------------------------------
# The model and its training step


class DGLM(eqx.Module):
    """A deep latent Gaussian model with its encoder, and, for ``"l2hmc"``, the conditional sampler.

    Args:
        variant: ``"vae"``, ``"hmc"`` or ``"l2hmc"`` (see the module docstring).
        latent_size: d (50 in the paper).
        hidden_size: width of the encoder's and decoder's two softplus layers (1024 in the paper).
        num_mh_steps: J, MH steps per minibatch (``"hmc"``, ``"l2hmc"``).
        num_leapfrog_steps: M, leapfrog steps per MH step.
        step_size: ε of HMC (fixed) or the initial ε of L2HMC (trained).
        sampler_hidden_size: width of the L2HMC networks' trunks (200 in the paper).
        sampler_encoder_size: width of the sampler's image encoder (512 in the paper).
        key: PRNG key.
        dtype: floating dtype of every weight.
    """

    encoder: GaussianEncoder
    decoder: BernoulliDecoder
    sampler: ConditionalSampler | None
    variant: str = eqx.field(static=True)
    num_mh_steps: int = eqx.field(static=True)
    num_leapfrog_steps: int = eqx.field(static=True)
    hmc_step_size: float = eqx.field(static=True)

    def __init__(
        self,
        variant: str,
        *,
        latent_size: int = 50,
        hidden_size: int = 1024,
        num_mh_steps: int = 1,
        num_leapfrog_steps: int = 10,
        step_size: float = 0.1,
        sampler_hidden_size: int = 200,
        sampler_encoder_size: int = 512,
        image_size: int = IMAGE_SIZE,
        key: PRNGKeyArray,
        dtype=None,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if not (isinstance(num_mh_steps, int) and num_mh_steps >= 1):
            raise ValueError(f"num_mh_steps must be a positive integer, got {num_mh_steps!r}")
        key_encoder, key_decoder, key_sampler = jax.random.split(key, 3)
        self.encoder = GaussianEncoder(
            latent_size, hidden_size, image_size=image_size, key=key_encoder, dtype=dtype
        )
        self.decoder = BernoulliDecoder(
            latent_size, hidden_size, image_size=image_size, key=key_decoder, dtype=dtype
        )
        self.sampler = (
            ConditionalSampler(
                latent_size,
                num_leapfrog_steps=num_leapfrog_steps,
                hidden_size=sampler_hidden_size,
                encoder_hidden_size=sampler_encoder_size,
                step_size=step_size,
                image_size=image_size,
                key=key_sampler,
                dtype=dtype,
            )
            if variant == "l2hmc"
            else None
        )
        self.variant = variant
        self.num_mh_steps = num_mh_steps
        self.num_leapfrog_steps = num_leapfrog_steps
        self.hmc_step_size = float(step_size)

    @property
    def latent_size(self) -> int:
        """d, the size of z."""
        return self.encoder.mean_head.out_features

    @property
    def step_size(self) -> float:
        """ε of the MCMC kernel (trained for L2HMC; NaN for the VAE)."""
        if self.variant == "l2hmc":
            return float(self.sampler.dynamics.step_size)
        return self.hmc_step_size if self.variant == "hmc" else math.nan

    def run_chain(
        self,
        rng_key: PRNGKeyArray,
        image: Float[Array, " pixels"],
        initial_position: Float[Array, " d"],
        num_mh_steps: int | None = None,
    ) -> ChainResult:
        """J MH steps of this model's kernel on p_φ(z | x) (L2HMC or HMC), one image."""
        num_mh_steps = self.num_mh_steps if num_mh_steps is None else num_mh_steps

        def logdensity_fn(latent):
            return log_joint(self.decoder, latent, image)

        if self.variant == "l2hmc":
            _, log_sd = self.encoder(image)
            loss_scale = jax.lax.stop_gradient(jnp.exp(2.0 * log_sd))
            return l2hmc_chain(
                rng_key, self.sampler, logdensity_fn, image, initial_position, loss_scale, num_mh_steps
            )
        return hmc_chain(
            rng_key,
            logdensity_fn,
            initial_position,
            self.hmc_step_size,
            self.num_leapfrog_steps,
            num_mh_steps,
        )


# ------------------------------------------------------------------------------------------------
# Evaluation


@eqx.filter_jit
def ais_log_likelihood(
    rng_key: PRNGKeyArray,
    decoder: BernoulliDecoder,
    images: Float[Array, "num_images pixels"],
    *,
    num_chains: int = 20,
    num_annealing_steps: int = 10_000,
    num_leapfrog_steps: int = 10,
    step_size: float = 0.05,
    target_acceptance: float = 0.65,
) -> AISResult:
    """AIS estimate of log p_φ(x) for each image, from the prior N(0, I) to p_φ(z | x).

    The defaults are the paper's evaluation (paper §5.2): 20 chains, 10,000 annealing steps (sigmoid
    schedule), 10 leapfrog steps per HMC transition, step size adapted per image toward an
    acceptance of 0.65.

    Args:
        rng_key: PRNG key.
        decoder: the decoder φ.
        images: binarised images, shape ``(num_images, pixels)``.
        num_chains: AIS chains per image.
        num_annealing_steps: temperatures after β₀ = 0.
        num_leapfrog_steps: leapfrog steps per HMC transition.
        step_size: initial step size of the adaptation.
        target_acceptance: the acceptance the step size adapts toward.

    Returns:
        An ``ais.AISResult`` with a leading axis over images
        (``log_marginal`` and ``standard_error`` of shape ``(num_images,)``).
    """
    latent_size = decoder.hidden_layers[0].in_features
    dtype = decoder.output_layer.weight.dtype

    def prior_sample(key):
        return jax.random.normal(key, (latent_size,), dtype)

    def one_image(key, image):
        return ais_log_marginal(
            key,
            log_prior,
            lambda latent: decoder.log_likelihood(latent, image),
            prior_sample,
            num_chains=num_chains,
            num_annealing_steps=num_annealing_steps,
            num_leapfrog_steps=num_leapfrog_steps,
            step_size=step_size,
            target_acceptance=target_acceptance,
        )

    return jax.vmap(one_image)(jax.random.split(rng_key, images.shape[0]), images)
