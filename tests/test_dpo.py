"""DPO: the loss's value at initialization, its Plackett-Luce generalization, and convergence to pi*."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rlhf_course.dpo import bradley_terry_prob, dpo_loss, exact_dpo_loss, plackett_luce_loss, train_toy_dpo
from rlhf_course.objective import optimal_policy


def test_loss_is_ln2_at_initialization():
    logp = torch.tensor([-3.0, -7.5, -0.2])
    loss, stats = dpo_loss(logp, logp - 2.0, logp, logp - 2.0, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert stats["margin"] == 0.0


def test_loss_hand_computed():
    # h_w - h_l = (-1 - -2) - (-3 - -2) = 2; beta = 0.5: loss = -log sigmoid(1) = log(1 + e^-1)
    loss, stats = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)
    assert stats["accuracy"] == 1.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-20, 0), min_size=4, max_size=4), st.floats(0.01, 5.0))
def test_plackett_luce_with_two_items_is_dpo(vals, beta):
    x = torch.tensor(vals, dtype=torch.float64).reshape(2, 2)
    ref = torch.tensor([[-1.0, -2.0], [-0.5, -4.0]], dtype=torch.float64)
    pl = plackett_luce_loss(x, ref, beta)
    dpo, _ = dpo_loss(x[:, 0], x[:, 1], ref[:, 0], ref[:, 1], beta)
    assert pl.item() == pytest.approx(dpo.item(), rel=1e-9, abs=1e-12)


def test_plackett_luce_matches_enumerated_probability():
    s = torch.tensor([[0.3, -0.2, 1.1]], dtype=torch.float64)  # beta h for a ranking y1 > y2 > y3
    e = np.exp(s.numpy()[0])
    p = e[0] / e.sum() * e[1] / (e[1] + e[2])
    assert plackett_luce_loss(s, torch.zeros_like(s), 1.0).item() == pytest.approx(-math.log(p), rel=1e-12)


def test_bradley_terry():
    assert bradley_terry_prob(3.0, 1.0) == pytest.approx(math.exp(3) / (math.exp(3) + math.exp(1)))
    assert bradley_terry_prob(1000.0, 0.0) == 1.0 and bradley_terry_prob(-1000.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="finite"):
        bradley_terry_prob(float("inf"), 0.0)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_exact_dpo_converges_to_optimal_policy(beta):
    ref, r = [0.5, 0.3, 0.2], [1.0, 0.0, -1.0]
    p = train_toy_dpo(ref, r, beta, steps=800, lr=0.1).numpy()
    assert 0.5 * np.abs(p - optimal_policy(ref, r, beta)).sum() < 0.01


def test_partition_function_cancels():
    """Shifting every reward by a constant (a different Z) leaves the DPO loss unchanged."""
    logits = torch.tensor([0.2, -0.4, 1.0, 0.0], dtype=torch.float64)
    ref = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    r = torch.tensor([1.0, -0.5, 0.3, 2.0], dtype=torch.float64)
    assert exact_dpo_loss(logits, ref, r, 0.7).item() == pytest.approx(exact_dpo_loss(logits, ref, r + 5.0, 0.7).item())


def test_validation():
    t = torch.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(t, torch.zeros(2), t, t, 0.1)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(t, t, t, t, 0.0)
    with pytest.raises(TypeError, match="tensor"):
        dpo_loss([0.0], t, t, t, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        dpo_loss(torch.tensor([float("nan")] * 3), t, t, t, 0.1)
    with pytest.raises(ValueError, match="K >= 2"):
        plackett_luce_loss(torch.zeros(2, 1), torch.zeros(2, 1), 0.1)
    with pytest.raises(ValueError, match="> 0 everywhere"):
        train_toy_dpo([1.0, 0.0], [0.0, 1.0], 1.0)
