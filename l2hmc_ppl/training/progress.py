"""Progress bars for the long steps (warm start, training): a rate and the time left, or nothing."""

from __future__ import annotations

__all__ = ["progress_bar"]


class _NoProgress:
    """A silent stand-in with the part of tqdm's interface that the library uses."""

    n = total = 0

    def update(self, *_):
        pass

    def set_postfix(self, *_, **__):
        pass

    def close(self):
        pass


def progress_bar(total: int, description: str, *, enabled: bool):
    """A tqdm bar over ``total`` iterations showing the rate and the time left, or a silent one.

    Updated by the host between compiled chunks, never inside one (no per-step host syncs).
    """
    if not enabled or total <= 0:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="it", leave=False, mininterval=0.5)
