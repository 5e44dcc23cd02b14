r"""The scale / transformation / translation network of L2HMC (Levy et al. 2018, Appendix).

One network maps a pair of state inputs (for the momentum network: the position and the gradient of
the potential; for the position network: the masked position and the momentum), the time encoding
τ(t) and optionally an auxiliary input (a conditioning vector, e.g. an image encoding) to the three
functions

$$S = e^{\lambda_s} \odot \tanh(W_s h + b_s), \qquad Q = e^{\lambda_q} \odot \tanh(W_q h + b_q), \qquad
T = W_t h + b_t,$$

where ``h`` is a shared trunk: each input gets its own linear embedding, the embeddings are summed and
passed through ReLU, then through ``num_hidden_layers`` further ReLU layers.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, Appendix (network architecture).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["L2HMCNetwork", "TIME_ENCODING_SIZE"]

#: τ(t) = (cos(2πt/M), sin(2πt/M)) has two components.
TIME_ENCODING_SIZE = 2

# The released code initialises every dense layer with a variance-scaling (fan-in, normal)
# initialiser of scale 2·factor: factor 1 for the trunk, 1e-3 for the three heads, so that an
# untrained sampler starts almost exactly at plain HMC. That holds at the paper's d ≤ 2; the
# log-determinant and the energy error sum d such terms, so beyond d = 2 the heads' standard
# deviation is scaled by 2/d, which keeps a fresh sampler at least as close to HMC at any
# dimension as at d = 2.
_TRUNK_INIT_SCALE = 2.0
_HEAD_INIT_SCALE = 2.0e-3


def head_init_scale(dim: int) -> float:
    """Variance-scaling factor of the S, Q, T heads: the released code's 2·10⁻³, times min(1, 2/d)²."""
    return _HEAD_INIT_SCALE * min(1.0, 2.0 / dim) ** 2


def init_linear(in_size: int, out_size: int, scale: float, *, key: PRNGKeyArray, dtype) -> eqx.nn.Linear:
    """A linear layer with variance-scaling (fan-in, truncated normal) weights and zero bias.

    The initialisation of the released L2HMC code, also used by the DLGM's encoder and decoder.
    """
    layer = eqx.nn.Linear(in_size, out_size, key=key, dtype=dtype)
    init = jax.nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")
    # eqx.nn.Linear stores weight as (out, in); the initialiser's fan-in is the last-but-one axis.
    weight = init(key, (in_size, out_size), dtype).T
    return eqx.tree_at(lambda lin: (lin.weight, lin.bias), layer, (weight, jnp.zeros_like(layer.bias)))


class L2HMCNetwork(eqx.Module):
    """Network returning the scale ``S``, transformation ``Q`` and translation ``T`` of one update.

    Args:
        dim: dimension of the target (size of each state input and of each output).
        hidden_size: width ``n_h`` of the trunk (10 for the paper's 2-d targets, 100 for the 50-d ICG).
        num_hidden_layers: ReLU layers after the summed embedding (1 in the paper, also for the DLGM's
            2×200 trunk: the embedding layer plus one hidden layer).
        aux_size: size of an optional conditioning input, embedded and summed into the first layer.
        key: PRNG key for the initial weights.
        dtype: floating dtype of the weights (default: JAX's default float).
    """

    embed_first: eqx.nn.Linear
    embed_second: eqx.nn.Linear
    embed_time: eqx.nn.Linear
    embed_aux: eqx.nn.Linear | None
    hidden_layers: tuple[eqx.nn.Linear, ...]
    scale_head: eqx.nn.Linear
    transformation_head: eqx.nn.Linear
    translation_head: eqx.nn.Linear
    scale_log_coeff: Float[Array, " dim"]
    transformation_log_coeff: Float[Array, " dim"]

    def __init__(
        self,
        dim: int,
        hidden_size: int,
        *,
        num_hidden_layers: int = 1,
        aux_size: int | None = None,
        key: PRNGKeyArray,
        dtype=None,
    ):
        dtype = jnp.result_type(float) if dtype is None else dtype
        keys = jax.random.split(key, 7 + num_hidden_layers)
        self.embed_first = init_linear(dim, hidden_size, _TRUNK_INIT_SCALE, key=keys[0], dtype=dtype)
        self.embed_second = init_linear(dim, hidden_size, _TRUNK_INIT_SCALE, key=keys[1], dtype=dtype)
        self.embed_time = init_linear(
            TIME_ENCODING_SIZE, hidden_size, _TRUNK_INIT_SCALE, key=keys[2], dtype=dtype
        )
        self.embed_aux = (
            None
            if aux_size is None
            else init_linear(aux_size, hidden_size, _TRUNK_INIT_SCALE, key=keys[3], dtype=dtype)
        )
        self.hidden_layers = tuple(
            init_linear(hidden_size, hidden_size, _TRUNK_INIT_SCALE, key=k, dtype=dtype) for k in keys[7:]
        )
        self.scale_head = init_linear(hidden_size, dim, head_init_scale(dim), key=keys[4], dtype=dtype)
        self.transformation_head = init_linear(
            hidden_size, dim, head_init_scale(dim), key=keys[5], dtype=dtype
        )
        self.translation_head = init_linear(hidden_size, dim, head_init_scale(dim), key=keys[6], dtype=dtype)
        self.scale_log_coeff = jnp.zeros(dim, dtype)
        self.transformation_log_coeff = jnp.zeros(dim, dtype)

    def __call__(
        self,
        first: Float[Array, " dim"],
        second: Float[Array, " dim"],
        time_encoding: Float[Array, " 2"],
        aux: Float[Array, " aux"] | None = None,
    ) -> tuple[Float[Array, " dim"], Float[Array, " dim"], Float[Array, " dim"]]:
        """Return ``(S, Q, T)`` for one sub-update."""
        hidden = self.embed_first(first) + self.embed_second(second) + self.embed_time(time_encoding)
        if self.embed_aux is not None:
            if aux is None:
                raise ValueError("this network was built with aux_size, so it needs an aux input")
            hidden = hidden + self.embed_aux(aux)
        elif aux is not None:
            raise ValueError("an aux input was given, but this network was built without aux_size")
        hidden = jax.nn.relu(hidden)
        for layer in self.hidden_layers:
            hidden = jax.nn.relu(layer(hidden))
        scale = jnp.exp(self.scale_log_coeff) * jnp.tanh(self.scale_head(hidden))
        transformation = jnp.exp(self.transformation_log_coeff) * jnp.tanh(self.transformation_head(hidden))
        translation = self.translation_head(hidden)
        return scale, transformation, translation

    def with_zero_heads(self) -> L2HMCNetwork:
        """The same network with S = Q = T = 0 everywhere (the HMC limit)."""
        heads = (self.scale_head, self.transformation_head, self.translation_head)
        zeroed = tuple(
            eqx.tree_at(lambda lin: (lin.weight, lin.bias), h, (h.weight * 0, h.bias * 0)) for h in heads
        )
        return eqx.tree_at(
            lambda net: (net.scale_head, net.transformation_head, net.translation_head), self, zeroed
        )
