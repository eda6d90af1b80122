"""Checks of the corrected statements of the chapters on reading runs and on DPO (issue 16, items 1, 3, 4, 9).

Each test computes the claim independently of the code the chapter uses where it can: the population DPO loss
by a plain loop over pairs, the Bradley-Terry maximum-likelihood reward with scipy, optimizer steps by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st
from scipy.optimize import minimize

from rlhf_course.dpo import Preferences, exact_dpo_loss, preference_loss, sample_preferences, train_sampled_dpo
from rlhf_course.objective import optimal_policy


def population_loss_by_loop(pi, ref, r, beta) -> float:
    """E over one pair (a, b) ~ pi_ref x pi_ref, labelled a > b w.p. sigmoid(r_a - r_b), of -log sigmoid(margin).

    ``pi`` need not sum to one over the support of ``pi_ref``: the margins only use ratios on the support.
    """
    total = 0.0
    for a in range(len(ref)):
        for b in range(len(ref)):
            if ref[a] == 0 or ref[b] == 0:
                continue  # the reference never writes it, so no pair ever shows it
            m = beta * (math.log(pi[a] / ref[a]) - math.log(pi[b] / ref[b]))
            p = 1 / (1 + math.exp(-(r[a] - r[b])))
            total += ref[a] * ref[b] * (p * math.log1p(math.exp(-m)) + (1 - p) * math.log1p(math.exp(m)))
    return total


# --- item 1: the DPO theorem needs the policy to stay on the reference's support ------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.05, 1.0), min_size=3, max_size=5), st.lists(st.floats(-3, 3), min_size=5, max_size=5),
       st.floats(0.2, 5.0), st.floats(0.01, 0.9), st.floats(-5, 10))
def test_mass_outside_the_support_leaves_the_dpo_loss_unchanged(w, r, beta, eps, r_out):
    ref = np.array(w) / np.sum(w)
    r = np.array(r[:len(ref)])
    star = optimal_policy(ref, r, beta)
    # the loop agrees with the course's vectorized loss at pi* (an independent computation of the same number)
    torch_loss = exact_dpo_loss(torch.log(torch.tensor(star)), torch.tensor(ref), torch.tensor(r), beta).item()
    assert population_loss_by_loop(star, ref, r, beta) == pytest.approx(torch_loss, abs=1e-10)
    # a response the reference never writes, and a policy that moves eps of pi*'s mass onto it
    ref_out, r_with_out = np.append(ref, 0.0), np.append(r, r_out)
    leaky = np.append((1 - eps) * star, eps)
    assert population_loss_by_loop(leaky, ref_out, r_with_out, beta) == pytest.approx(torch_loss, abs=1e-10)
    assert 0.5 * np.abs(leaky - np.append(star, 0.0)).sum() == pytest.approx(eps)  # yet it is not pi*


def test_on_the_support_pi_star_is_the_only_minimizer():
    ref, r, beta = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.0, -1.0]), 1.0
    star = optimal_policy(ref, r, beta)
    best = population_loss_by_loop(star, ref, r, beta)
    rng = np.random.default_rng(3)
    for pi in rng.dirichlet(np.ones(3), size=300):
        gap = population_loss_by_loop(pi, ref, r, beta) - best
        assert gap > 0 or np.abs(pi - star).max() < 1e-6


# --- item 3: what beta does to the optimizer's step -----------------------------------------------------------

def _first_step(ref, prefs, beta, optimizer, lr):
    ref_logp = torch.log(torch.as_tensor(ref, dtype=torch.float64))[None]
    logits = ref_logp.clone().requires_grad_(True)
    opt = optimizer([logits], lr=lr)
    preference_loss(torch.log_softmax(logits, -1), ref_logp, prefs, beta).backward()
    opt.step()
    return (logits.detach() - ref_logp)[0].numpy()


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 5.0), st.floats(0.05, 5.0), st.integers(0, 1000))
@example(1.0, 2.0, 75)  # a response with as many wins as losses: its gradient is rounding noise
def test_sgd_step_scales_with_beta_and_adam_step_does_not(beta_a, beta_b, seed):
    ref, r = np.array([0.4, 0.3, 0.2, 0.1]), np.array([1.0, -0.5, 0.3, 2.0])
    prefs = sample_preferences(ref, r, 100, seed=seed)
    sgd_a = _first_step(ref, prefs, beta_a, torch.optim.SGD, 0.01)
    sgd_b = _first_step(ref, prefs, beta_b, torch.optim.SGD, 0.01)
    # at pi = pi_ref every margin is 0, so the gradient is exactly beta times a fixed vector
    np.testing.assert_allclose(sgd_a * beta_b, sgd_b * beta_a, rtol=1e-9, atol=1e-15)
    adam_a = _first_step(ref, prefs, beta_a, torch.optim.Adam, 0.01)
    adam_b = _first_step(ref, prefs, beta_b, torch.optim.Adam, 0.01)
    # g = -(beta / 2N) * (wins - losses) per response, so a nonzero |g| is at least beta / 200
    # (an SGD step >= 2.5e-6) and a zero one is rounding noise (~1e-17): 1e-9 separates them.
    moved = np.abs(sgd_a) > 1e-9
    # Adam's first step is lr * g / (|g| + eps) elementwise: the scale of g cancels up to eps = 1e-8;
    # where g is rounding noise the step is noise / eps, tiny but of either sign, so only its size is checked
    np.testing.assert_allclose(adam_a[moved], adam_b[moved], rtol=1e-2)
    np.testing.assert_allclose(np.abs(adam_a[moved]), 0.01, rtol=1e-2)
    assert np.abs(adam_a[~moved]).max(initial=0.0) < 1e-6
    assert np.abs(adam_b[~moved]).max(initial=0.0) < 1e-6


# --- item 4: for a table of logits the loss is flat where the pairs are silent ---------------------------------

def test_responses_absent_from_the_data_keep_their_logits():
    ref = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    # every comparison is among responses 0, 1, 2; responses 3 and 4 never appear
    ranking = np.array([[0, 1], [1, 2], [0, 2], [2, 1], [1, 0], [0, 1]] * 5, dtype=np.int64)
    prefs = Preferences(np.zeros(len(ranking), dtype=np.int64), ranking)
    pi = train_sampled_dpo(ref, prefs, beta=0.5, steps=300, lr=0.05).numpy()
    # logits 3 and 4 did not move (their gradient is 0 up to rounding, which Adam's normalization
    # turns into steps of about 1e-11), so their ratio is the reference's, unlike the data's responses ...
    assert pi[3] / pi[4] == pytest.approx(ref[3] / ref[4], rel=1e-6)
    assert abs(pi[0] / pi[1] - ref[0] / ref[1]) > 1e-2
    # ... while their probabilities moved with the normalizer
    assert abs(pi[3] - ref[3]) > 1e-3


# --- item 9: the minimizer on a fixed dataset is the optimal policy of the fitted reward ----------------------

def _bradley_terry_mle(prefs: Preferences, k: int) -> np.ndarray:
    """The maximum-likelihood Bradley-Terry reward of a dataset (response 0 pinned at 0), fitted by scipy."""
    w, l = prefs.chosen, prefs.rejected

    def nll(h_rest):
        h = np.concatenate([[0.0], h_rest])
        d = h[w] - h[l]
        return np.logaddexp(0, -d).sum()

    res = minimize(nll, np.zeros(k - 1), method="BFGS", options={"gtol": 1e-10})
    return np.concatenate([[0.0], res.x])


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_dataset_minimizer_is_the_optimal_policy_of_the_fitted_reward(beta):
    ref, r = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.0, -1.0])
    prefs = sample_preferences(ref, r, 40, seed=4)
    pairs = prefs.chosen != prefs.rejected
    for y in range(3):  # the maximum-likelihood reward exists: every response wins and loses
        assert (prefs.chosen[pairs] == y).any() and (prefs.rejected[pairs] == y).any()
    h_hat = _bradley_terry_mle(prefs, 3)
    fitted = optimal_policy(ref, h_hat, beta)
    pi = train_sampled_dpo(ref, prefs, beta, steps=3000, lr=0.05).numpy()
    tv_fitted = 0.5 * np.abs(pi - fitted).sum()
    tv_population = 0.5 * np.abs(pi - optimal_policy(ref, r, beta)).sum()
    assert tv_fitted < 1e-4
    assert tv_population > 100 * tv_fitted  # on a fixed dataset the target is not pi*_beta of the true reward


# --- presentation helpers moved out of the chapters' cells -----------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abc .<>eos", min_size=1, max_size=30), max_size=12),
       st.integers(20, 100))
def test_wrapped_fits_the_width_and_keeps_every_word(items, width):
    from rlhf_course.tables import wrapped

    text = wrapped("samples:", items, width=width)
    body = repr(list(items))
    for line in text.split("\n"):
        # a line is longer than the width only when it is one word that cannot be broken
        assert len(line) <= width or " " not in line.strip()
    assert text.split() == f"samples: {body}".split()


def test_wrapped_validates_its_input():
    from rlhf_course.tables import wrapped

    with pytest.raises(TypeError, match="label"):
        wrapped(3, ["a"])
    with pytest.raises(ValueError, match="width"):
        wrapped("x", ["a"], width=5)


def test_chapter_7_figures_draw_every_run():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhf_course.plotting import plot_agreement_bars, plot_rewards_vs_sqrt_kl

    rng = np.random.default_rng(0)
    runs = {f"run {i}": {"kl": rng.random(30) * 5, "proxy": rng.random(30), "gold": rng.random(30)}
            for i in range(3)}
    fig = plot_rewards_vs_sqrt_kl(runs, window=5)
    assert [len(ax.lines) for ax in fig.axes] == [3, 3]
    # x is sqrt of the smoothed KL: never negative, at most sqrt(max KL)
    x = fig.axes[0].lines[0].get_xdata()
    assert (x >= 0).all() and x.max() <= math.sqrt(runs["run 0"]["kl"].max()) + 1e-12
    plt.close(fig)
    fig = plot_agreement_bars({"a": 0.8, "b": 0.45})
    assert [round(p.get_width(), 6) for p in fig.axes[0].patches] == [0.8, 0.45]
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_rewards_vs_sqrt_kl({})
    with pytest.raises(ValueError):
        plot_agreement_bars({})
