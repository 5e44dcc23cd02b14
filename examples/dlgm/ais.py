r"""Annealed importance sampling (AIS) estimates of a log marginal likelihood.

Part of the L2HMC-DGLM example (``examples/dlgm``): the evaluation of Levy et al. 2018, §5.2. Nothing here is
specific to L2HMC; the transitions are BlackJAX's HMC.

AIS (Neal, 2001) estimates $\log p(x) = \log \int p(z)\, p(x \mid z)\, dz$ by
moving `num_chains` independent chains from the prior $p(z)$ to the posterior
through the tempered densities

$$\pi_t(z) \propto p(z)\, p(x \mid z)^{\beta_t}, \qquad
0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,$$

and accumulating for each chain the log importance weight

$$\log w = \sum_{t=1}^{T} (\beta_t - \beta_{t-1}) \log p(x \mid z_{t-1}),
\qquad z_0 \sim p(z), \quad z_t \sim K_t(z_{t-1}, \cdot),$$

where $K_t$ is an HMC transition (BlackJAX's `hmc.build_kernel`, velocity
Verlet, identity mass matrix) that leaves $\pi_t$ invariant. Every weight has
expectation $p(x)$, so the estimate is $\log \hat p(x) = \log \frac{1}{n} \sum_i
w_i$ (log-mean-exp), which by Jensen is biased *low*; the delta method gives the
bias $\approx -\mathrm{SE}^2/2$ and the standard error

$$\mathrm{SE}\bigl[\log \hat p(x)\bigr] \approx
\frac{\mathrm{sd}(w)}{\sqrt{n}\, \overline{w}},$$

computed from the weights normalised by their maximum.

The L2HMC-DGLM evaluation (Levy et al. 2018, §5.2) is the default configuration: 20 chains,
10,000 annealing steps on a sigmoid schedule, 10 leapfrog steps per transition,
step size adapted to an acceptance rate of about 0.65.

**Step-size adaptation.** Before the transition at temperature $t$ the step size
is updated by a Robbins–Monro rule with constant gain on the acceptance
probabilities of all chains at temperature $t - 1$:

$$\log \varepsilon_t = \log \varepsilon_{t-1}
+ \gamma\, (\bar a_{t-1} - a^\star).$$

The gain does not decay because the best step size drifts as $\beta$ grows. The
step size used at $t$ depends only on the past, so each $K_t$ is still an exact
$\pi_t$-invariant MH transition given it, and the estimator stays consistent.
Because the step size is shared across chains, the weights are no longer exactly
independent and exactly unbiased; the effect vanishes as the number of chains
grows. For estimates that are unbiased to the letter, run a pilot with
adaptation, then rerun with `adapt_step_size=False` and
`step_size=pilot.step_sizes` (a schedule fixed in advance).

Cost: each temperature takes `num_leapfrog_steps + 1` gradient evaluations per
chain (the extra one re-evaluates the tempered density at the new $\beta$).

References:
    R. M. Neal, *Annealed importance sampling*, Statistics and Computing 11 (2001).
    Y. Wu, Y. Burda, R. Salakhutdinov, R. Grosse, *On the quantitative analysis of
    decoder-based generative models*, ICLR 2017 (sigmoid schedule, HMC-AIS).
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein, *Generalizing Hamiltonian Monte
    Carlo with neural networks*, ICLR 2018 (evaluation protocol).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = [
    "AISResult",
    "ais_log_marginal",
    "annealing_schedule",
    "log_mean_exp_and_standard_error",
]


class AISResult(NamedTuple):
    """Output of `ais_log_marginal`.

    Attributes:
        log_marginal: The estimate of $\\log p(x)$: log-mean-exp of `log_weights`.
        log_weights: One log importance weight per chain.
        standard_error: Delta-method standard error of `log_marginal`,
            $\\mathrm{sd}(w) / (\\sqrt{n}\\, \\bar w)$ (NaN for a single chain).
        acceptance_rate: Mean MH acceptance probability over chains and
            temperatures.
        step_sizes: The step size used at each temperature $\\beta_1..\\beta_T$;
            pass it back with `adapt_step_size=False` to reuse the schedule.
        positions: The chains' final states, approximate posterior draws.
    """

    log_marginal: Float[Array, ""]
    log_weights: Float[Array, " num_chains"]
    standard_error: Float[Array, ""]
    acceptance_rate: Float[Array, ""]
    step_sizes: Float[Array, " num_annealing_steps"]
    positions: Float[Array, "num_chains dim"]


def annealing_schedule(
    num_annealing_steps: int, kind: str = "sigmoid", *, sigmoid_scale: float = 4.0
) -> np.ndarray:
    r"""Inverse temperatures $0 = \beta_0 < \dots < \beta_T = 1$.

    - `"linear"`: $\beta_t = t / T$.
    - `"sigmoid"` (Wu et al., 2017): $\beta_t = \frac{\sigma(\delta(2t/T - 1)) -
      \sigma(-\delta)}{\sigma(\delta) - \sigma(-\delta)}$ with $\delta$ =
      `sigmoid_scale`; it spends more steps near both ends, where the tempered
      density changes fastest relative to its spread.

    Args:
        num_annealing_steps: $T \geq 1$, the number of transitions.
        kind: `"sigmoid"` or `"linear"`.
        sigmoid_scale: $\delta > 0$ for the sigmoid schedule.

    Returns:
        float64 numpy array of shape `(num_annealing_steps + 1,)`, endpoints exact.

    Raises:
        ValueError: For an unknown `kind` or a non-positive count or scale.
    """
    if num_annealing_steps < 1:
        raise ValueError(f"num_annealing_steps must be >= 1, got {num_annealing_steps}.")
    fraction = np.arange(num_annealing_steps + 1, dtype=np.float64) / num_annealing_steps
    if kind == "linear":
        betas = fraction
    elif kind == "sigmoid":
        if sigmoid_scale <= 0:
            raise ValueError(f"sigmoid_scale must be > 0, got {sigmoid_scale}.")
        sigmoid = lambda u: 1.0 / (1.0 + np.exp(-u))  # noqa: E731
        low, high = sigmoid(-sigmoid_scale), sigmoid(sigmoid_scale)
        betas = (sigmoid(sigmoid_scale * (2.0 * fraction - 1.0)) - low) / (high - low)
    else:
        raise ValueError(f"schedule must be 'sigmoid', 'linear' or an array, got {kind!r}.")
    betas[0], betas[-1] = 0.0, 1.0
    return betas


def log_mean_exp_and_standard_error(
    log_weights: Float[Array, " num_chains"],
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""Log-mean-exp of log weights and its delta-method standard error.

    With $\tilde w_i = \exp(\log w_i - \max_j \log w_j)$ (no overflow):

    $$\log \hat Z = \max_j \log w_j + \log \overline{\tilde w}, \qquad
    \mathrm{SE} = \frac{\mathrm{sd}(\tilde w)}{\sqrt{n}\, \overline{\tilde w}},$$

    with the $n - 1$ sample standard deviation. SE is scale-free, so normalising
    does not change it. Chains with weight $-\infty$ count as zero weights.

    Args:
        log_weights: One log weight per chain, shape `(n,)`.

    Returns:
        `(log_mean_exp, standard_error)`, scalars; the SE is NaN when `n = 1`.
    """
    num_chains = log_weights.shape[0]
    max_log_weight = jnp.max(log_weights)
    shift = jnp.where(jnp.isfinite(max_log_weight), max_log_weight, 0.0)
    weights = jnp.exp(log_weights - shift)
    mean_weight = jnp.mean(weights)
    log_mean_exp = shift + jnp.log(mean_weight)
    standard_error = jnp.std(weights, ddof=1) / (jnp.sqrt(num_chains) * mean_weight)
    return log_mean_exp, standard_error


def ais_log_marginal(
    rng_key: PRNGKeyArray,
    log_prior_fn: Callable[[Float[Array, " dim"]], Float[Array, ""]],
    log_likelihood_fn: Callable[[Float[Array, " dim"]], Float[Array, ""]],
    prior_sample_fn: Callable[[PRNGKeyArray], Float[Array, " dim"]],
    *,
    num_chains: int = 20,
    num_annealing_steps: int = 10_000,
    num_leapfrog_steps: int = 10,
    step_size: float | Float[ArrayLike, " num_annealing_steps"] = 0.05,
    target_acceptance: float = 0.65,
    adapt_step_size: bool = True,
    adaptation_rate: float = 0.05,
    schedule: str | Float[ArrayLike, " num_annealing_steps+1"] = "sigmoid",
) -> AISResult:
    r"""Estimate $\log p(x)$ by annealed importance sampling with HMC transitions.

    Anneals `num_chains` chains from $p(z)$ to $p(z \mid x)$ along $p(z)\,
    p(x \mid z)^{\beta_t}$ (see the module docstring for the math and for why
    step-size adaptation is allowed). The whole run is one `lax.scan` over
    temperatures with the chains vmapped inside, compiled once per set of
    functions and static sizes.

    It is vmap-compatible: to evaluate a batch of data points, close
    `log_likelihood_fn` over one data point inside a function that you
    `jax.vmap` over the batch (and over keys); the step size then adapts per
    data point across that data point's chains. Pass the same function objects
    on every call to reuse the compiled code; Python closures that capture
    *concrete* data trigger one compilation per new closure, so vmap instead of
    looping.

    Args:
        rng_key: A JAX PRNG key.
        log_prior_fn: $\log p(z)$ of a flat latent of shape `(dim,)`, normalised
            (the estimate is of $\log \int e^{\text{log\_prior}} e^{\text{log\_lik}}$).
        log_likelihood_fn: $\log p(x \mid z)$ for the fixed data $x$.
        prior_sample_fn: Draws one $z \sim p(z)$ of shape `(dim,)` from a key.
        num_chains: Number of independent AIS chains $n$.
        num_annealing_steps: Number of temperatures $T$ after $\beta_0 = 0$.
        num_leapfrog_steps: Leapfrog steps per HMC transition.
        step_size: The initial step size when adapting; otherwise a fixed step
            size, scalar or one per temperature, shape `(num_annealing_steps,)`.
        target_acceptance: Acceptance probability the adaptation aims at.
        adapt_step_size: Adapt the step size toward `target_acceptance`.
        adaptation_rate: Gain $\gamma$ of the update of $\log \varepsilon$.
        schedule: `"sigmoid"`, `"linear"` (see
            `annealing_schedule`) or an
            explicit array of `num_annealing_steps + 1` increasing inverse
            temperatures from exactly 0 to exactly 1.

    Returns:
        An `AISResult`.

    Raises:
        ValueError: For a bad schedule or step size, or non-positive counts.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> log_prior = lambda z: -0.5 * (z @ z) - z.size * 0.5 * jnp.log(2 * jnp.pi)
        >>> def estimate(key, x):  # vmap over data points
        ...     log_lik = lambda z: -0.5 * jnp.sum((x - z) ** 2) - jnp.log(2 * jnp.pi)
        ...     sample = lambda k: jax.random.normal(k, (2,))
        ...     return ais_log_marginal(key, log_prior, log_lik, sample, num_annealing_steps=500)
        >>> xs = jnp.zeros((4, 2))
        >>> keys = jax.random.split(jax.random.key(0), 4)
        >>> result = jax.jit(jax.vmap(estimate))(keys, xs)
        >>> result.log_marginal.shape
        (4,)

    References:
        R. M. Neal, *Annealed importance sampling*, Statistics and Computing (2001).
    """
    if num_chains < 1 or num_leapfrog_steps < 1:
        raise ValueError("num_chains and num_leapfrog_steps must be >= 1.")
    if isinstance(schedule, str):
        betas = annealing_schedule(num_annealing_steps, schedule)
    else:
        betas = _check_betas(schedule, num_annealing_steps)
    step_size = jnp.asarray(step_size)
    if adapt_step_size and step_size.ndim != 0:
        raise ValueError("with adapt_step_size=True, step_size is the initial scalar.")
    if step_size.shape not in ((), (num_annealing_steps,)):
        raise ValueError(
            f"step_size must be a scalar or of shape ({num_annealing_steps},), got shape {step_size.shape}."
        )
    return _run_ais(
        rng_key,
        jnp.asarray(betas),
        step_size,
        target_acceptance,
        adaptation_rate,
        log_prior_fn=log_prior_fn,
        log_likelihood_fn=log_likelihood_fn,
        prior_sample_fn=prior_sample_fn,
        num_chains=num_chains,
        num_leapfrog_steps=num_leapfrog_steps,
        adapt_step_size=adapt_step_size,
    )


def _check_betas(schedule: ArrayLike, num_annealing_steps: int) -> ArrayLike:
    """Validate an explicit schedule when its values are known (not traced)."""
    if np.shape(schedule) != (num_annealing_steps + 1,):
        raise ValueError(
            f"schedule must have shape ({num_annealing_steps + 1},) = "
            f"(num_annealing_steps + 1,), got {np.shape(schedule)}."
        )
    if isinstance(schedule, jax.core.Tracer):
        return schedule
    betas = np.asarray(schedule, dtype=np.float64)
    if betas[0] != 0.0 or betas[-1] != 1.0 or np.any(np.diff(betas) <= 0):
        raise ValueError(
            f"schedule must increase strictly from exactly 0 to exactly 1; got {betas[0]} ... {betas[-1]}."
        )
    return betas


@functools.partial(
    jax.jit,
    static_argnames=(
        "log_prior_fn",
        "log_likelihood_fn",
        "prior_sample_fn",
        "num_chains",
        "num_leapfrog_steps",
        "adapt_step_size",
    ),
)
def _run_ais(
    rng_key,
    betas,
    step_size,
    target_acceptance,
    adaptation_rate,
    *,
    log_prior_fn,
    log_likelihood_fn,
    prior_sample_fn,
    num_chains,
    num_leapfrog_steps,
    adapt_step_size,
) -> AISResult:
    """The compiled AIS loop; `betas` are taken as given (no checks)."""
    num_annealing_steps = betas.shape[0] - 1
    key_init, key_transitions = jax.random.split(rng_key)
    positions = jax.vmap(prior_sample_fn)(jax.random.split(key_init, num_chains))
    if positions.ndim != 2:
        raise ValueError(f"prior_sample_fn must return a flat latent (dim,), got {positions.shape[1:]}.")
    dtype = positions.dtype
    betas = betas.astype(dtype)
    inverse_mass_matrix = jnp.ones(positions.shape[1], dtype)
    kernel = blackjax.mcmc.hmc.build_kernel()

    if adapt_step_size:
        fixed_step_sizes = jnp.zeros(num_annealing_steps, dtype)  # unused
    else:
        fixed_step_sizes = jnp.broadcast_to(step_size, (num_annealing_steps,)).astype(dtype)

    def tempered_and_log_likelihood(position, beta):
        log_likelihood = log_likelihood_fn(position)
        return log_prior_fn(position) + beta * log_likelihood, log_likelihood

    def one_temperature(carry, inputs):
        positions, log_weights, log_step_size, sum_acceptance = carry
        beta_previous, beta, key, fixed_step_size = inputs

        # Re-evaluate at the new temperature: the weight increment needs
        # log p(x|z_{t-1}) and the HMC state needs the gradient at beta_t.
        value_and_grad = jax.value_and_grad(tempered_and_log_likelihood, has_aux=True)
        (logdensity, log_likelihood), logdensity_grad = jax.vmap(value_and_grad, in_axes=(0, None))(
            positions, beta
        )
        log_weights = log_weights + (beta - beta_previous) * log_likelihood

        current_step_size = jnp.exp(log_step_size) if adapt_step_size else fixed_step_size
        logdensity_fn = lambda z: tempered_and_log_likelihood(z, beta)[0]  # noqa: E731
        states = blackjax.mcmc.hmc.HMCState(positions, logdensity, logdensity_grad)
        states, info = jax.vmap(
            lambda k, s: kernel(
                k,
                s,
                logdensity_fn,
                current_step_size,
                inverse_mass_matrix,
                num_leapfrog_steps,
            )
        )(jax.random.split(key, num_chains), states)

        mean_acceptance = jnp.mean(info.acceptance_rate)
        if adapt_step_size:  # depends only on the past: exact MH at every beta_t
            log_step_size = log_step_size + adaptation_rate * (mean_acceptance - target_acceptance)
        carry = (states.position, log_weights, log_step_size, sum_acceptance + mean_acceptance)
        return carry, current_step_size

    initial_log_step_size = jnp.log(step_size).astype(dtype) if adapt_step_size else jnp.zeros((), dtype)
    init = (positions, jnp.zeros(num_chains, dtype), initial_log_step_size, jnp.zeros((), dtype))
    inputs = (
        betas[:-1],
        betas[1:],
        jax.random.split(key_transitions, num_annealing_steps),
        fixed_step_sizes,
    )
    (positions, log_weights, _, sum_acceptance), step_sizes = jax.lax.scan(one_temperature, init, inputs)
    log_marginal, standard_error = log_mean_exp_and_standard_error(log_weights)
    return AISResult(
        log_marginal=log_marginal,
        log_weights=log_weights,
        standard_error=standard_error,
        acceptance_rate=sum_acceptance / num_annealing_steps,
        step_sizes=step_sizes,
        positions=positions,
    )
