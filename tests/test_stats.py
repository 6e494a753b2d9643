"""tl.paired_test, McNemar's exact test, on hand-checked cases and on a real pair of models."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tlhelpers as tl


def _answers(fixed: int, broken: int, both_right: int = 90, both_wrong: int = 2):
    """Right/wrong answers of two models on the same photos with the given numbers of changes."""
    first = [False] * fixed + [True] * broken + [True] * both_right + [False] * both_wrong
    second = [True] * fixed + [False] * broken + [True] * both_right + [False] * both_wrong
    return first, second


def test_the_p_value_is_the_two_sided_binomial_tail_of_the_changed_photos():
    result = tl.paired_test(*_answers(fixed=3, broken=5))
    assert (result.n, result.fixed, result.broken, result.changed) == (100, 3, 5, 8)
    assert result.p_value == pytest.approx(2 * sum(math.comb(8, k) for k in range(4)) / 2**8)  # 186/256
    assert result.p_value == pytest.approx(0.7265625)
    lopsided = tl.paired_test(*_answers(fixed=9, broken=0))
    assert lopsided.p_value == pytest.approx(2 / 2**9)  # all nine changes one way: 0.39%
    assert str(lopsided) == (
        "9 of 101 photos changed: 9 to right, 0 to wrong; a split at least this lopsided comes by chance with probability 0.4%"
    )


def test_photos_both_models_get_right_or_wrong_do_not_count():
    few = tl.paired_test(*_answers(fixed=6, broken=1, both_right=10, both_wrong=0))
    many = tl.paired_test(*_answers(fixed=6, broken=1, both_right=5000, both_wrong=300))
    assert few.p_value == many.p_value == pytest.approx(2 * (1 + 7) / 2**7)


def test_the_test_is_symmetric_and_capped_at_one():
    first, second = _answers(fixed=4, broken=4)
    assert tl.paired_test(first, second).p_value == 1.0  # an even split: the tail sums past 1, capped
    a, b = _answers(fixed=2, broken=7)
    assert tl.paired_test(a, b).p_value == tl.paired_test(b, a).p_value


def test_no_change_is_said_in_words():
    same = np.array([True, False, True, True])
    result = tl.paired_test(same, same)
    assert result.changed == 0 and result.p_value == 1.0
    assert str(result) == "0 of 4 photos changed: the two models agree on every photo, so there is nothing to test"


def test_answers_for_different_photos_are_refused():
    with pytest.raises(ValueError, match="same photos"):
        tl.paired_test([True, False], [True, False, True])


def test_two_heads_on_the_samples_features(trained):
    """A real pair: the session's trained head against the same head reading only the last 200
    of its 1,280 features (a weaker model), on the same 40 validation photos."""
    features, labels = trained.val.features, trained.val.labels
    right = trained.head.predict(features, verbose=0).argmax(-1) == labels
    weights = trained.head.get_weights()
    kernel = weights[-2].copy()
    kernel[:-200] = 0
    trained.head.set_weights([*weights[:-2], kernel, weights[-1]])
    try:
        right_halved = trained.head.predict(features, verbose=0).argmax(-1) == labels
    finally:
        trained.head.set_weights(weights)
    result = tl.paired_test(right, right_halved)
    assert result.changed > 0, "the weaker head should answer some photos differently"
    assert result.n == len(labels) == 40
    assert result.fixed == int(np.sum(right_halved & ~right)) and result.broken == int(np.sum(right & ~right_halved))
    k, n = min(result.fixed, result.broken), result.changed
    assert result.p_value == pytest.approx(min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0)
