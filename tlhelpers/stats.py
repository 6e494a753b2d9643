"""Is one classifier better than another on the same photos? McNemar's exact test.

Two models evaluated on the same photos differ only on the photos where one is right
and the other wrong. If neither were better, each such photo would be as likely to go
one way as the other, like a coin toss; :func:`paired_test` says how likely a split at
least as lopsided as the observed one would then be (McNemar's exact test, the sign
test on those photos). The standard error of a single accuracy is the wrong yardstick
for such a difference: it counts the variation of photos both models share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedTest:
    """The result of :func:`paired_test`.

    Attributes:
        n: photos compared.
        fixed: photos the second model gets right and the first wrong.
        broken: photos the first model gets right and the second wrong.
        p_value: two-sided probability, with no real difference, of a split of the
            ``fixed + broken`` changed photos at least as lopsided as this one.
    """

    n: int
    fixed: int
    broken: int
    p_value: float

    @property
    def changed(self) -> int:
        """Photos on which the two models disagree about right and wrong."""
        return self.fixed + self.broken

    def __str__(self) -> str:
        if not self.changed:
            return f"0 of {self.n} photos changed: the two models agree on every photo, so there is nothing to test"
        return (
            f"{self.changed} of {self.n} photos changed: {self.fixed} to right, {self.broken} to wrong; "
            f"a split at least this lopsided comes by chance with probability {self.p_value:.1%}"
        )


def paired_test(right_first, right_second) -> PairedTest:
    """McNemar's exact test for two models' right/wrong answers on the same photos.

    Args:
        right_first: for each photo, whether the first model got it right (booleans).
        right_second: the same for the second model, photo by photo.

    Returns:
        A :class:`PairedTest` (its ``str`` is one sentence).

    Raises:
        ValueError: when the two lists differ in length.
    """
    a = np.asarray(right_first, bool)
    b = np.asarray(right_second, bool)
    if a.shape != b.shape:
        raise ValueError(f"Both models must answer the same photos: got {a.shape} and {b.shape}.")
    fixed, broken = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    changed = fixed + broken
    tail = sum(math.comb(changed, k) for k in range(min(fixed, broken) + 1))
    p_value = min(1.0, 2 * tail / 2**changed) if changed else 1.0
    return PairedTest(int(a.size), fixed, broken, p_value)


__all__ = ["PairedTest", "paired_test"]
