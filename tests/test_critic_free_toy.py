"""rlhf_course.critic_free_toy: the exact expected updates of RLOO / GRPO / Dr. GRPO on a bandit, checked
against brute-force enumeration of ordered groups with advantages computed by hand, and the chapter's
propositions (fixed points, RLOO's variance, where each KL placement leads, best-of-n against pi*)."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_course import critic_free_toy as cf
from rlhf_course import toy
from rlhf_course.kl import kl_divergence

torch.set_num_threads(1)
D = torch.float64
PROB = cf.make_group_bandit()
BETA = 0.5


def hand_advantages(r, center, scale, eps=1e-6):
    """Advantages of one group by loops (independent of rl.group_advantages)."""
    G = len(r)
    out = []
    mean = sum(r) / G
    std = math.sqrt(sum((v - mean) ** 2 for v in r) / (G - 1))
    for i, v in enumerate(r):
        if center == "mean":
            a = v - mean
        elif center == "loo":
            a = v - sum(r[j] for j in range(G) if j != i) / (G - 1)
        else:
            a = v
        if scale == "std":
            a = 0.0 if std == 0 else a / (std + eps)
        out.append(a)
    return out


def brute_force(probs, f, G, center, scale):
    """Over all K^G ordered groups: W^+, W^-, the gradient estimate's mean and total variance."""
    K = len(probs)
    pos, neg, mean, second = np.zeros(K), np.zeros(K), np.zeros(K), 0.0
    gs, ws = [], []
    for ys in itertools.product(range(K), repeat=G):
        w = float(np.prod([probs[y] for y in ys]))
        adv = hand_advantages([f[y] for y in ys], center, scale)
        g = np.zeros(K)
        for y, a in zip(ys, adv):
            pos[y] += w * max(a, 0) / G
            neg[y] += w * min(a, 0) / G
            g += a * (np.eye(K)[y] - probs) / G
        gs.append(g)
        ws.append(w)
    gs, ws = np.array(gs), np.array(ws)
    mean = (ws[:, None] * gs).sum(0)
    var = (ws * ((gs - mean) ** 2).sum(1)).sum()
    return pos, neg, mean, var


def test_compositions_cover_every_group_once():
    for K, G in ((3, 4), (2, 5), (4, 3)):
        counts, samples, log_coef = cf.compositions(K, G)
        assert len(counts) == math.comb(G + K - 1, K - 1)
        assert (counts.sum(1) == G).all() and len({tuple(c.tolist()) for c in counts}) == len(counts)
        for c, s in zip(counts, samples):
            assert torch.equal(torch.bincount(s, minlength=K), c)
        p = torch.tensor([[0.2, 0.5, 0.3, 0.0][:K - 1] + [0.0]], dtype=D)
        p = p + 0.1
        p = p / p.sum()
        assert float(cf.group_probs(p, G).sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("center,scale", [("mean", "std"), ("mean", "none"), ("loo", "none"), ("loo", "std"),
                                          ("none", "none")])
@pytest.mark.parametrize("G", [2, 4])
def test_weights_and_moments_match_brute_force(center, scale, G):
    g = torch.Generator().manual_seed(G)
    probs = torch.softmax(torch.randn(PROB.scores.shape, generator=g, dtype=D), -1)
    pos, neg = cf.advantage_weights(PROB, probs, G, center, scale)
    mean, var = cf.gradient_moments(PROB, probs, G, center, scale)
    for x in range(PROB.n_prompts):
        bp, bn, bm, bv = brute_force(probs[x].numpy(), PROB.scores[x].numpy(), G, center, scale)
        np.testing.assert_allclose(pos[x].numpy(), bp, atol=1e-12)
        np.testing.assert_allclose(neg[x].numpy(), bn, atol=1e-12)
        np.testing.assert_allclose(mean[x].numpy(), bm, atol=1e-12)
        assert float(var[x]) == pytest.approx(bv, rel=1e-9, abs=1e-15)


def grad_expected_reward(probs):
    theta = torch.log(probs).clone().requires_grad_(True)
    (g,) = torch.autograd.grad((torch.softmax(theta, -1) * PROB.scores).sum(), theta)
    return g


@pytest.mark.parametrize("G", [2, 3, 8])
def test_loo_is_unbiased_and_the_group_mean_shrinks_by_g_minus_1_over_g(G):
    probs = PROB.ref_probs
    true = grad_expected_reward(probs)
    loo, _ = cf.gradient_moments(PROB, probs, G, "loo", "none")
    mean, _ = cf.gradient_moments(PROB, probs, G, "mean", "none")
    value, _ = cf.gradient_moments(PROB, probs, G, "value", "none")
    np.testing.assert_allclose(loo.numpy(), true.numpy(), atol=1e-12)
    np.testing.assert_allclose(value.numpy(), true.numpy(), atol=1e-12)
    np.testing.assert_allclose(mean.numpy(), (G - 1) / G * true.numpy(), atol=1e-12)


@pytest.mark.parametrize("G", [2, 4, 16])
def test_rloo_variance_formula(G):
    """Var_loo = Var_V + (sigma^2 E|s|^2 + |grad J|^2) / (G (G - 1)), Var_V the true-value baseline's."""
    p, r = PROB.ref_probs, PROB.scores
    _, var_loo = cf.gradient_moments(PROB, p, G, "loo", "none")
    _, var_v = cf.gradient_moments(PROB, p, G, "value", "none")
    gj = grad_expected_reward(p)
    mu = (p * r).sum(-1, keepdim=True)
    sigma2 = (p * (r - mu) ** 2).sum(-1)
    es2 = 1 - (p ** 2).sum(-1)
    pred = var_v + (sigma2 * es2 + (gj ** 2).sum(-1)) / (G * (G - 1))
    np.testing.assert_allclose(var_loo.numpy(), pred.numpy(), rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=9, max_size=9), st.integers(2, 6))
def test_mean_centered_weights_sum_to_zero(logits, G):
    probs = torch.softmax(torch.tensor(logits, dtype=D).reshape(3, 3), -1)
    pos, neg = cf.advantage_weights(PROB, probs, G, "mean", "std")
    np.testing.assert_allclose((pos + neg).sum(-1).numpy(), 0.0, atol=1e-10)
    assert (pos >= 0).all() and (neg <= 0).all()


def test_kl_gradients_on_and_off_policy():
    old = torch.log(toy.optimum(PROB, 0.2))
    true = lambda th: torch.softmax(th, -1) * (torch.log(torch.softmax(th, -1)) - torch.log(PROB.ref_probs)
                                               - kl_divergence(torch.softmax(th, -1), PROB.ref_probs)[:, None])
    for pl in ("exact", "k2", "k3-ratio", "reward"):
        np.testing.assert_allclose(cf.kl_gradient(PROB, old, old, pl).numpy(), true(old).numpy(), atol=1e-12)
    np.testing.assert_allclose(cf.kl_gradient(PROB, old, old, "k1").numpy(), 0.0, atol=1e-12)
    # k3 on-policy: the forward KL's gradient, pi - pi_ref in logit space
    np.testing.assert_allclose(cf.kl_gradient(PROB, old, old, "k3").numpy(),
                               (torch.softmax(old, -1) - PROB.ref_probs).numpy(), atol=1e-12)
    moved = old + torch.tensor([[0.3, -0.2, 0.1]] * 3, dtype=D)  # off-policy: pi_theta != pi_old
    np.testing.assert_allclose(cf.kl_gradient(PROB, moved, old, "k3-ratio").numpy(), true(moved).numpy(),
                               atol=1e-12)
    for pl in ("k2", "reward", "k1"):
        assert float((cf.kl_gradient(PROB, moved, old, pl) - true(moved)).abs().max()) > 1e-3


@pytest.mark.parametrize("G", [2, 4])
def test_fixed_points_of_the_propositions(G):
    opt = toy.optimum(PROB, BETA)
    loo = cf.fixed_point(PROB, BETA, G, "loo", "none", "k3-ratio", lr=2.0)
    assert cf.tv_per_prompt(loo["probs"], opt).max() < 1e-8
    mean = cf.fixed_point(PROB, BETA, G, "mean", "none", "k2", lr=2.0)
    assert cf.tv_per_prompt(mean["probs"], toy.optimum(PROB, BETA * G / (G - 1))).max() < 1e-8
    std = cf.fixed_point(PROB, BETA, G, "mean", "std", "exact", lr=2.0)
    assert std["residual"] < 1e-10
    near = cf.nearest_optimum(PROB, std["probs"])
    assert near["tv"][2] < 1e-6  # two reward levels: on the family pi*_beta'
    # prompts 0 and 1 differ only in the reward's scale: std scaling gives them the same policy (up to
    # the eps = 1e-6 added to the standard deviation, ten times larger relative to prompt 1's)
    assert cf.tv_per_prompt(std["probs"][0:1], std["probs"][1:2])[0] < 1e-4
    assert near["beta"][0] == pytest.approx(10 * near["beta"][1], rel=1e-4)
    assert cf.tv_per_prompt(std["probs"], opt).max() > 0.01
    k3 = cf.fixed_point(PROB, BETA, G, "loo", "none", "k3", lr=2.0)
    assert cf.tv_per_prompt(k3["probs"], toy.forward_kl_optimum(PROB, BETA)).max() < 1e-8


def test_kl_in_the_reward_stops_every_variant_at_the_optimum():
    opt = toy.optimum(PROB, BETA)
    for center, scale in (("mean", "std"), ("mean", "none"), ("loo", "none"), ("loo", "std")):
        pos, neg = cf.advantage_weights(PROB, opt, 4, center, scale, beta_in_reward=BETA)
        assert float(pos.abs().max() + neg.abs().max()) < 1e-8


def test_multi_epoch_updates_have_the_same_fixed_points():
    one = cf.fixed_point(PROB, BETA, 4, "loo", "none", "k3-ratio", lr=1.0, ppo_epochs=1)
    four = cf.fixed_point(PROB, BETA, 4, "loo", "none", "k3-ratio", lr=0.5, ppo_epochs=4, clip_eps=0.2)
    assert cf.tv_per_prompt(one["probs"], four["probs"]).max() < 1e-8


def test_best_of_n_against_the_optimum_and_the_bound():
    t = cf.best_of_n_table([0.5, 0.3, 0.2], [1.0, 0.0, -1.0], [1, 2, 4, 8])
    assert t["kl"][0] == 0 and t["tv"][0] < 1e-12
    assert (t["kl"] <= t["bound"] + 1e-12).all()
    assert (t["opt_reward"] >= t["reward"] - 1e-12).all()  # nothing beats the frontier
    # n = 2 by hand: P(best) = 1 - 0.5^2, P(middle) = (0.3 + 0.2)^2 - 0.2^2, P(worst) = 0.2^2
    bon = np.array([0.75, 0.21, 0.04])
    assert t["kl"][1] == pytest.approx(float((bon * np.log(bon / [0.5, 0.3, 0.2])).sum()), rel=1e-12)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        cf.advantage_weights(PROB, PROB.ref_probs, 1)
    with pytest.raises(ValueError):
        cf.advantage_weights(PROB, PROB.ref_probs, 4, center="median")
    with pytest.raises(ValueError):
        cf.advantage_weights(PROB, PROB.ref_probs, 4, scale="mad")
    with pytest.raises(ValueError):
        cf.gradient_moments(PROB, PROB.ref_probs[:2], 4)
    with pytest.raises(ValueError):
        cf.kl_gradient(PROB, PROB.ref_logits[:, 0], PROB.ref_logits[:, 0], "k4")
    with pytest.raises(ValueError):
        cf.fixed_point(PROB, -1.0, 4)
    with pytest.raises(TypeError):
        cf.advantage_weights(toy.make_sequences(), torch.ones(2, 27, dtype=D) / 27, 4)


def test_the_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from rlhf_course.plotting import critic_free as pcf

    t = cf.best_of_n_table([0.5, 0.3, 0.2], [1.0, 0.0, -1.0], [1, 2, 4])
    front = toy.frontier(toy.make_bandit([[0.5, 0.3, 0.2]], [[1.0, 0.0, -1.0]]), np.geomspace(0.1, 10, 20))
    for fig in (pcf.plot_best_of_n_toy(t, front, fig=Figure()),
                pcf.plot_fixed_points({"ref": PROB.ref_probs, "opt": toy.optimum(PROB, BETA)},
                                      [["a", "b", "c"]] * 3, ["x0", "x1", "x2"], fig=Figure()),
                pcf.plot_points([{"curves": {"v": ([1, 2], [0.1, 0.2])}, "logx": True, "xticks": [1, 2]}],
                                fig=Figure()),
                pcf.plot_gold_vs_sqrt_kl({"kl": t["kl"], "gold": t["reward"], "proxy": t["reward"]},
                                         {"a": 1.0, "b": 0.1}, {"run": (t["kl"], t["reward"], t["reward"])},
                                         {"a": 1.0, "b": 0.2}, fig=Figure())):
        assert len(fig.axes) >= 1
