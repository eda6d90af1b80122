"""The preference models against independent computations: all rankings enumerated, the product written out."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rlhf_course.preference_models import bradley_terry_prob, plackett_luce_nll

scores = st.lists(st.floats(-20, 20), min_size=2, max_size=5)


@settings(max_examples=60, deadline=None)
@given(scores)
def test_plackett_luce_is_a_distribution_over_rankings(s):
    rankings = np.array([[s[i] for i in order] for order in itertools.permutations(range(len(s)))])
    assert math.isclose(np.exp(-plackett_luce_nll(rankings)).sum(), 1.0, rel_tol=1e-9)


@settings(max_examples=60, deadline=None)
@given(scores)
def test_plackett_luce_numpy_torch_and_the_written_out_product_agree(s):
    product = 1.0
    for k in range(len(s) - 1):
        product *= math.exp(s[k]) / sum(math.exp(v) for v in s[k:])
    nll = plackett_luce_nll(np.array([s]))[0]
    assert math.isclose(nll, -math.log(product), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(float(plackett_luce_nll(torch.tensor([s], dtype=torch.float64))[0]), nll,
                        rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.floats(-800, 800), st.floats(-800, 800))
def test_two_item_plackett_luce_is_bradley_terry_without_overflow(a, b):
    p = bradley_terry_prob(a, b)
    assert 0.0 <= p <= 1.0 and math.isclose(p + bradley_terry_prob(b, a), 1.0, rel_tol=1e-12)
    assert math.isclose(math.exp(-plackett_luce_nll(np.array([[a, b]]))[0]), p, rel_tol=1e-9, abs_tol=1e-300)


@pytest.mark.parametrize("bad", [np.ones(3), np.array([[0.0, np.nan]])])
def test_plackett_luce_rejects_what_is_not_a_finite_table(bad):
    with pytest.raises(ValueError, match=r"\(n, K\)"):
        plackett_luce_nll(bad)
