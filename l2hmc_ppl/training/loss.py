r"""The training objectives: the paper's ESJD loss and the default moment-aware loss.

**Paper** (Levy et al. 2018, Eq. 7–8). For a proposal ξ' = F L_θ ξ accepted with probability A
and squared jump δ(ξ, ξ') = |x − x'|²,

$$\ell_\lambda(\xi, \xi', A) = \frac{\lambda^2}{\delta A + c} - \frac{\delta A}{\lambda^2},
\qquad c = 10^{-4},$$

averaged over a batch. The first term punishes proposals that do not move, the second rewards
large accepted jumps; λ sets the length scale (the paper's Gaussian runs use λ² = 0.1). With a
per-coordinate λ (as in the DLGM, where λ is the encoder's posterior sd) the jump is measured in
units of λ: δ̃ = Σᵢ (xᵢ − x'ᵢ)² / λᵢ².

**Moments** (the default). The expected squared jump rewards a move x → −x through the mode as
much as a draw from the target: such a sampler mixes the mean and never the variance (its
second-moment ESS stays near zero). The moment-aware loss measures two jumps in the whitened
coordinates z = L⁻¹(x − μ) of the warm start, per coordinate,

$$\delta_1 = \frac{1}{d} \sum_i (z'_i - z_i)^2, \qquad
  \delta_2 = \frac{1}{2d} \sum_i \big(z'^2_i - z^2_i\big)^2,$$

(both ≈ 2 for independent standard-normal pairs), and applies ℓ_λ to each:
ℓ = ℓ_λ(δ₁A) + ℓ_λ(δ₂A). A flip has δ₂ = 0 and earns the reciprocal term's full penalty; working in
whitened units makes one λ² (default 1) right for targets of any scale.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §4 (Eq. 7–8).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["LOSS_EPSILON", "esjd_loss", "moments_loss", "reciprocal_jump_loss"]

#: The constant c added to δA in the reciprocal term, as in the released code.
LOSS_EPSILON = 1e-4


def reciprocal_jump_loss(jump: Float[Array, "..."], loss_scale: ArrayLike) -> Float[Array, "..."]:
    """ℓ_λ = λ²/(j + c) − j/λ² for an accepted jump j = δA; a non-finite j counts as no move."""
    loss = loss_scale / (jump + LOSS_EPSILON) - jump / loss_scale
    return jnp.where(jnp.isfinite(jump), loss, loss_scale / LOSS_EPSILON)


def esjd_loss(
    position: Float[Array, "... dim"],
    proposed_position: Float[Array, "... dim"],
    acceptance_probability: Float[Array, "..."],
    loss_scale: ArrayLike = 0.1,
) -> Float[Array, "..."]:
    """Per-sample paper loss ℓ_λ (average it over the batch yourself).

    Args:
        position: current positions x (flattened), shape ``(..., dim)``.
        proposed_position: proposals x', same shape.
        acceptance_probability: A, shape ``(...)``.
        loss_scale: λ² as a scalar, or a per-coordinate λ² of shape ``(dim,)``.

    Returns:
        ℓ_λ for each sample, shape ``(...)``. A non-finite proposal counts as δA = 0.
    """
    loss_scale = jnp.asarray(loss_scale)
    squared_step = (proposed_position - position) ** 2
    if loss_scale.ndim == 0:
        return reciprocal_jump_loss(jnp.sum(squared_step, axis=-1) * acceptance_probability, loss_scale)
    jump = jnp.sum(squared_step / loss_scale, axis=-1) * acceptance_probability
    return reciprocal_jump_loss(jump, 1.0)


def moments_loss(
    whitened: Float[Array, "... dim"],
    proposed_whitened: Float[Array, "... dim"],
    acceptance_probability: Float[Array, "..."],
    loss_scale: ArrayLike = 1.0,
) -> Float[Array, "..."]:
    """Per-sample moment-aware loss ℓ_λ(δ₁A) + ℓ_λ(δ₂A) in whitened coordinates (module docstring).

    Args:
        whitened: current positions in the whitened coordinates z, shape ``(..., dim)``.
        proposed_whitened: proposals z', same shape.
        acceptance_probability: A, shape ``(...)``.
        loss_scale: λ² (a scalar; the jumps are per coordinate, ≈ 2 for independent draws).

    Returns:
        The loss for each sample, shape ``(...)``.
    """
    first, second = moment_jumps(whitened, proposed_whitened)
    return reciprocal_jump_loss(first * acceptance_probability, loss_scale) + reciprocal_jump_loss(
        second * acceptance_probability, loss_scale
    )


def moment_jumps(
    whitened: Float[Array, "... dim"],
    proposed_whitened: Float[Array, "... dim"],
    *,
    per_coordinate: bool = False,
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """(δ₁, δ₂): the squared jumps of z and of z² (see the module docstring).

    Averaged over the coordinates, or, with ``per_coordinate``, one per coordinate (shape
    ``(..., dim)``: (z'ᵢ − zᵢ)² and ½(z'ᵢ² − zᵢ²)²).
    """
    first = (proposed_whitened - whitened) ** 2
    second = 0.5 * (proposed_whitened**2 - whitened**2) ** 2
    if per_coordinate:
        return first, second
    return jnp.mean(first, axis=-1), jnp.mean(second, axis=-1)
