"""The names of the paper benchmark: target groups and sampler keys (no JAX, so ``--help`` is instant)."""

from __future__ import annotations

__all__ = ["DEFAULT_TARGETS", "EXTRA_TARGETS", "QUICK_TARGETS", "SAMPLERS", "resolve_targets"]

#: Targets of a default run: the paper's four and the unequal-variance mog2 of Fig. 1d.
DEFAULT_TARGETS: tuple[str, ...] = ("icg", "scg", "rough_well", "mog", "mog2_unequal")

#: The other targets with a configuration (``--targets extra``): the SCG variant of the released
#: notebook and the A-NICE-MC targets.
EXTRA_TARGETS: tuple[str, ...] = ("scg_notebook", "ring", "ring5", "mog2", "mog6")

#: Targets of a ``--quick`` run.
QUICK_TARGETS: tuple[str, ...] = ("scg",)

#: Sampler keys, in table order.
SAMPLERS: tuple[str, ...] = (
    "l2hmc_paper",
    "l2hmc_tuned",
    "hmc_warm",
    "hmc",
    "nuts_diag",
    "nuts_dense",
    "chees",
)


def resolve_targets(spec: str | None, *, quick: bool = False) -> tuple[str, ...]:
    """The target names of a ``--targets`` value, in order and without repeats.

    ``None`` or an empty value gives :data:`DEFAULT_TARGETS` (:data:`QUICK_TARGETS` with ``quick``);
    ``extra`` stands for :data:`EXTRA_TARGETS` and ``all`` for both groups.

    Args:
        spec: the comma-separated ``--targets`` value.
        quick: whether the run is ``--quick`` (its default is :data:`QUICK_TARGETS`).

    Returns:
        The target names.

    Example:
        >>> resolve_targets("scg,extra")[:3]
        ('scg', 'scg_notebook', 'ring')
    """
    names = [name.strip() for name in (spec or "").split(",") if name.strip()]
    if not names:
        return QUICK_TARGETS if quick else DEFAULT_TARGETS
    groups = {"extra": EXTRA_TARGETS, "all": DEFAULT_TARGETS + EXTRA_TARGETS}
    return tuple(dict.fromkeys(target for name in names for target in groups.get(name, (name,))))
