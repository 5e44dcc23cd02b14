"""The learned dynamics: networks, masks, step size and preconditioner as one Equinox pytree.

Symbols of the paper and their names here:

| paper | code |
|---|---|
| ξ = (x, v, d) | phase-space point: ``position``, ``momentum``, ``direction`` |
| ε | ``step_size`` (stored as ``log_step_size``) |
| M | ``num_leapfrog_steps`` |
| S, Q, T | ``scale``, ``transformation``, ``translation`` |
| mᵗ, m̄ᵗ = 1 − mᵗ | ``masks[t]`` and its complement |
| τ(t) | ``time_encoding(t)`` |
| S_v, Q_v, T_v | outputs of ``momentum_net`` (inputs x, ∇U(x), τ(t)) |
| S_x, Q_x, T_x | outputs of ``position_net`` (inputs x ⊙ m̄ᵗ, v, τ(t)) |

Beyond the paper, the dynamics carry an affine preconditioner x = loc + L z (``preconditioner_loc``,
``preconditioner_scale``; L diagonal if the scale is a vector, lower-triangular if it is a matrix).
The learned leapfrog runs in the whitened coordinates z; with zero heads this is exactly HMC with
inverse mass matrix L Lᵀ. The preconditioner is identity unless set (e.g. by the warm start).

The dynamics are a plain pytree: pass them to the kernel as an argument, and new weights of the same
structure reuse the compiled kernel.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §3.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from l2hmc_ppl._checks import check_key, check_nonnegative_int, check_positive_int, is_traced
from l2hmc_ppl.dynamics.networks import L2HMCNetwork

__all__ = [
    "DEFAULT_NUM_LEAPFROG_STEPS",
    "DEFAULT_STEP_SIZE_JITTER",
    "L2HMCDynamics",
    "default_dynamics",
    "default_hidden_size",
    "draw_masks",
    "time_encoding",
]

DEFAULT_NUM_LEAPFROG_STEPS = 10
"""M of the dynamics that the adapters build (chosen on the development suite, docs/benchmarks.md)."""
DEFAULT_STEP_SIZE_JITTER = 0.5
"""Step-size jitter of the dynamics that the adapters build (chosen on the development suite)."""


def default_hidden_size(dim: int) -> int:
    """Width n_h of the networks when not given: 10 for the 2-d toys, growing to 100 at 50-d.

    Returns ``min(100, max(10, 2 * dim))`` (the paper uses 10 at d = 2 and 100 at d = 50).
    """
    return min(100, max(10, 2 * dim))


def draw_masks(rng_key: PRNGKeyArray, num_leapfrog_steps: int, dim: int) -> Bool[Array, "M dim"]:
    """Draw one binary mask per leapfrog step, each with exactly ⌊dim/2⌋ ones.

    For ``dim == 1`` the mask is all zeros, so the single coordinate is updated in the second
    position sub-update and the first one is the identity.
    """
    keys = jax.random.split(rng_key, num_leapfrog_steps)
    num_ones = dim // 2

    def one_mask(key):
        order = jax.random.permutation(key, dim)
        return order < num_ones  # a uniformly random subset of size ⌊dim/2⌋

    return jax.vmap(one_mask)(keys)


def time_encoding(step_index, num_leapfrog_steps: int, dtype) -> Float[Array, " 2"]:
    """τ(t) = (cos(2πt/M), sin(2πt/M)) for the 0-based ``step_index`` (t = step_index + 1)."""
    angle = 2.0 * jnp.pi * (step_index + 1) / num_leapfrog_steps
    return jnp.stack([jnp.cos(angle), jnp.sin(angle)]).astype(dtype)


class L2HMCDynamics(eqx.Module):
    """Learned L2HMC dynamics on ``R^dim``.

    Args:
        dim: dimension of the (flattened) target.
        num_leapfrog_steps: M, the number of learned leapfrog steps per proposal.
        hidden_size: width of both networks' trunks.
        step_size: initial ε (> 0); trainable, stored as log ε.
        step_size_jitter: j in [0, 1): every transition uses ε·u with u ~ U(1 − j, 1), drawn
            independently of the state (each transition stays exact; the kernel is a mixture of
            exact kernels). 0 is the paper's fixed-ε kernel. A fixed ε and M make HMC-like
            trajectories resonate on near-Gaussian targets (x → −x: means mix fast, variances
            do not); the jitter breaks this. Not trained.
        num_hidden_layers: ReLU layers after the embedding in each network (1 in the paper).
        aux_size: size of an optional conditioning input seen by both networks (e.g. an image
            encoding for the DLGM); ``None`` for unconditional dynamics.
        key: PRNG key for the weights and the masks.
        dtype: floating dtype of the parameters.

    Example:
        >>> dynamics = L2HMCDynamics(2, num_leapfrog_steps=10, key=jax.random.key(0))
        >>> hmc = dynamics.as_hmc_limit()  # exactly leapfrog HMC with the same ε and M
    """

    position_net: L2HMCNetwork
    momentum_net: L2HMCNetwork
    masks: Bool[Array, "M dim"]
    log_step_size: Float[Array, ""]
    step_size_jitter: Float[Array, ""]
    preconditioner_loc: Float[Array, " dim"]
    preconditioner_scale: Float[Array, " dim"] | Float[Array, "dim dim"]
    num_leapfrog_steps: int = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        num_leapfrog_steps: int = 10,
        hidden_size: int = 10,
        step_size: float = 0.1,
        step_size_jitter: float = 0.0,
        num_hidden_layers: int = 1,
        aux_size: int | None = None,
        key: PRNGKeyArray,
        dtype=None,
    ):
        dim = check_positive_int("dim", dim)
        num_leapfrog_steps = check_positive_int("num_leapfrog_steps", num_leapfrog_steps)
        hidden_size = check_positive_int("hidden_size", hidden_size)
        num_hidden_layers = check_nonnegative_int("num_hidden_layers", num_hidden_layers)
        if aux_size is not None:
            try:
                aux_size = check_positive_int("aux_size", aux_size)
            except ValueError:
                raise ValueError(f"aux_size must be None or a positive integer, got {aux_size!r}") from None
        _check_step_size(step_size)
        _check_step_size_jitter(step_size_jitter)
        check_key("key", key)
        dtype = jnp.result_type(float) if dtype is None else dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}")
        key_position, key_momentum, key_masks = jax.random.split(key, 3)
        network_options = dict(num_hidden_layers=num_hidden_layers, aux_size=aux_size, dtype=dtype)
        self.position_net = L2HMCNetwork(dim, hidden_size, key=key_position, **network_options)
        self.momentum_net = L2HMCNetwork(dim, hidden_size, key=key_momentum, **network_options)
        self.masks = draw_masks(key_masks, num_leapfrog_steps, dim)
        self.log_step_size = jnp.asarray(math.log(step_size), dtype)
        self.step_size_jitter = jnp.asarray(step_size_jitter, dtype)
        self.preconditioner_loc = jnp.zeros(dim, dtype)
        self.preconditioner_scale = jnp.ones(dim, dtype)
        self.num_leapfrog_steps = num_leapfrog_steps

    # ----------------------------------------------------------------------------------------
    # Derived quantities
    @property
    def dim(self) -> int:
        """Dimension of the target."""
        return self.masks.shape[-1]

    @property
    def step_size(self) -> Float[Array, ""]:
        """ε = exp(log_step_size)."""
        return jnp.exp(self.log_step_size)

    @property
    def hidden_size(self) -> int:
        """Width of the networks' trunks."""
        return self.position_net.embed_first.out_features

    @property
    def num_hidden_layers(self) -> int:
        """ReLU layers after the embedding."""
        return len(self.position_net.hidden_layers)

    @property
    def aux_size(self) -> int | None:
        """Size of the conditioning input, or ``None``."""
        embed = self.position_net.embed_aux
        return None if embed is None else embed.in_features

    @property
    def dense_preconditioner(self) -> bool:
        """Whether the preconditioner scale is a full lower-triangular matrix."""
        return self.preconditioner_scale.ndim == 2

    # ----------------------------------------------------------------------------------------
    # Copies with some parts replaced
    def as_hmc_limit(self) -> L2HMCDynamics:
        """The same dynamics with S = Q = T = 0: exactly leapfrog HMC, M steps of size ε.

        The step-size jitter and the preconditioner are kept: the steps are jittered like the
        dynamics' own, and the preconditioner is HMC's metric (inverse mass matrix L Lᵀ).
        """
        return eqx.tree_at(
            lambda d: (d.position_net, d.momentum_net),
            self,
            (self.position_net.with_zero_heads(), self.momentum_net.with_zero_heads()),
        )

    def with_step_size(self, step_size) -> L2HMCDynamics:
        """A copy with ε replaced (also checked under ``jit``: a non-positive ε is an error)."""
        _check_step_size(step_size)
        step_size = jnp.asarray(step_size, self.log_step_size.dtype)
        if isinstance(step_size, jax.core.Tracer):
            step_size = eqx.error_if(
                step_size,
                ~(jnp.isfinite(step_size) & (step_size > 0)),
                "step_size must be a positive finite number",
            )
        return eqx.tree_at(lambda d: d.log_step_size, self, jnp.log(step_size))

    def with_step_size_jitter(self, step_size_jitter) -> L2HMCDynamics:
        """A copy with the step-size jitter j replaced (0 for the paper's fixed ε)."""
        _check_step_size_jitter(step_size_jitter)
        new = jnp.asarray(step_size_jitter, self.log_step_size.dtype)
        if isinstance(new, jax.core.Tracer):
            new = eqx.error_if(new, ~((new >= 0) & (new < 1)), "step_size_jitter must be in [0, 1)")
        return eqx.tree_at(lambda d: d.step_size_jitter, self, new)

    def with_num_leapfrog_steps(self, num_leapfrog_steps: int, *, key: PRNGKeyArray) -> L2HMCDynamics:
        """A copy with M replaced: new masks (drawn from ``key``), the same networks, ε and metric."""
        num_leapfrog_steps = check_positive_int("num_leapfrog_steps", num_leapfrog_steps)
        check_key("key", key)
        new = eqx.tree_at(lambda d: d.masks, self, draw_masks(key, num_leapfrog_steps, self.dim))
        object.__setattr__(new, "num_leapfrog_steps", num_leapfrog_steps)  # a static field: not a leaf
        return new

    def with_preconditioner(self, loc, scale) -> L2HMCDynamics:
        """A copy whose learned leapfrog runs in coordinates z with x = loc + L z.

        Args:
            loc: shift, shape ``(dim,)``.
            scale: ``(dim,)`` for a diagonal L, or a lower-triangular ``(dim, dim)`` matrix L
                (e.g. the Cholesky factor of a posterior covariance estimate).
        """
        dtype = self.log_step_size.dtype
        loc = jnp.asarray(loc, dtype)
        scale = jnp.asarray(scale, dtype)
        if loc.shape != (self.dim,):
            raise ValueError(f"preconditioner loc must have shape ({self.dim},), got {loc.shape}")
        if scale.shape not in ((self.dim,), (self.dim, self.dim)):
            raise ValueError(
                f"preconditioner scale must have shape ({self.dim},) or ({self.dim}, {self.dim}), "
                f"got {scale.shape}"
            )
        if scale.ndim == 2:
            scale = jnp.tril(scale)
        diag = scale if scale.ndim == 1 else jnp.diag(scale)
        if is_traced((loc, scale)):  # checked when the program runs
            loc = eqx.error_if(loc, ~jnp.all(jnp.isfinite(loc)), "preconditioner loc must be finite")
            scale = eqx.error_if(
                scale,
                ~(jnp.all(jnp.isfinite(scale)) & jnp.all(diag > 0)),
                "preconditioner scale must be finite with a positive diagonal",
            )
        elif not bool(jnp.all(jnp.isfinite(loc))):
            raise ValueError(f"preconditioner loc must be finite, got {loc}")
        elif not (bool(jnp.all(jnp.isfinite(scale))) and bool(jnp.all(diag > 0))):
            raise ValueError("preconditioner scale must be finite with a positive diagonal")
        return eqx.tree_at(lambda d: (d.preconditioner_loc, d.preconditioner_scale), self, (loc, scale))

    def trainable_filter(self) -> L2HMCDynamics:
        """A pytree of booleans marking the parameters that training updates.

        The networks and the step size are trained; the masks, the jitter and the preconditioner
        are not.
        """
        trainable = jax.tree_util.tree_map(eqx.is_inexact_array, self)
        return eqx.tree_at(
            lambda d: (d.masks, d.step_size_jitter, d.preconditioner_loc, d.preconditioner_scale),
            trainable,
            (False, False, False, False),
        )

    # ----------------------------------------------------------------------------------------
    # The preconditioner x = loc + L z
    def to_whitened(self, position: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """z = L⁻¹ (x − loc)."""
        centred = position - self.preconditioner_loc
        if self.dense_preconditioner:
            return jsl.solve_triangular(self.preconditioner_scale, centred, lower=True)
        return centred / self.preconditioner_scale

    def from_whitened(self, whitened: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """x = loc + L z."""
        if self.dense_preconditioner:
            return self.preconditioner_loc + self.preconditioner_scale @ whitened
        return self.preconditioner_loc + self.preconditioner_scale * whitened

    def whiten_gradient(self, gradient: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """∇_z = Lᵀ ∇_x (chain rule through x = loc + L z)."""
        if self.dense_preconditioner:
            return self.preconditioner_scale.T @ gradient
        return self.preconditioner_scale * gradient

    def unwhiten_gradient(self, whitened_gradient: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """∇_x = L⁻ᵀ ∇_z: the inverse of
        [`whiten_gradient`][l2hmc_ppl.L2HMCDynamics.whiten_gradient]."""
        if self.dense_preconditioner:
            return jsl.solve_triangular(self.preconditioner_scale.T, whitened_gradient, lower=False)
        return whitened_gradient / self.preconditioner_scale


def _scalar_value(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _check_step_size_jitter(step_size_jitter) -> None:
    if isinstance(step_size_jitter, jax.core.Tracer):
        return  # a traced value: checked at run time by the caller
    if not 0.0 <= _scalar_value("step_size_jitter", step_size_jitter) < 1.0:
        raise ValueError(f"step_size_jitter must be in [0, 1), got {step_size_jitter!r}")


def _check_step_size(step_size) -> None:
    if isinstance(step_size, jax.core.Tracer):
        return  # a traced value: checked at run time by the caller
    value = _scalar_value("step_size", step_size)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")


def check_dynamics_options(
    num_leapfrog_steps: int | None, hidden_size: int | None, step_size: float, step_size_jitter: float | None
) -> None:
    """Check the options of [`default_dynamics`][l2hmc_ppl.default_dynamics] without building anything
    (the adapters take them at construction and build the dynamics later, once the dimension is known)."""
    if num_leapfrog_steps is not None:
        check_positive_int("num_leapfrog_steps", num_leapfrog_steps)
    if hidden_size is not None:
        check_positive_int("hidden_size", hidden_size)
    _check_step_size(step_size)
    if step_size_jitter is not None:
        _check_step_size_jitter(step_size_jitter)


def default_dynamics(
    dim: int,
    *,
    key: PRNGKeyArray,
    num_leapfrog_steps: int | None = None,
    hidden_size: int | None = None,
    step_size: float = 0.1,
    step_size_jitter: float | None = None,
    dtype=None,
) -> L2HMCDynamics:
    """The dynamics the adapters start from for a ``dim``-dimensional target.

    [`DEFAULT_NUM_LEAPFROG_STEPS`][l2hmc_ppl.dynamics.DEFAULT_NUM_LEAPFROG_STEPS] steps,
    [`default_hidden_size`][l2hmc_ppl.dynamics.default_hidden_size] units,
    [`DEFAULT_STEP_SIZE_JITTER`][l2hmc_ppl.dynamics.DEFAULT_STEP_SIZE_JITTER], and zero heads: exactly
    HMC until trained (the warm start tunes its ε and preconditioner). Any argument overrides its
    default.
    """
    options = dict(
        num_leapfrog_steps=DEFAULT_NUM_LEAPFROG_STEPS if num_leapfrog_steps is None else num_leapfrog_steps,
        hidden_size=default_hidden_size(dim) if hidden_size is None else hidden_size,
        step_size=step_size,
        step_size_jitter=DEFAULT_STEP_SIZE_JITTER if step_size_jitter is None else step_size_jitter,
        dtype=jnp.result_type(float) if dtype is None else jnp.dtype(dtype),
    )
    return _build_hmc_limit(dim, key, tuple(sorted(options.items())))


@eqx.filter_jit
def _build_hmc_limit(dim, key, options):
    # One compiled program instead of a dozen eager initialisations (a few seconds of compiling).
    return L2HMCDynamics(dim, key=key, **dict(options)).as_hmc_limit()
