"""rlhf_course.rl: GAE, the clipped losses, the per-token KL rewards and the KL controllers, against
hand-computed cases, the toolchain notes' reference numbers and plain loop implementations."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_course import rl

torch.set_num_threads(1)
D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


# --------------------------------------------------------------------------------------------------
# GAE


def test_gae_toolchain_case():
    """TOOLCHAIN.md: rewards [0, 0, 1], values 0.5, gamma 1, lambda 0.95, terminal value 0."""
    adv, ret = rl.gae(t([[0.0, 0.0, 1.0]]), t([[0.5, 0.5, 0.5]]), t([[1.0, 1.0, 1.0]]), gamma=1.0, lam=0.95)
    np.testing.assert_allclose(adv[0].numpy(), [0.45125, 0.475, 0.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ret[0].numpy(), [0.95125, 0.975, 1.0], rtol=0, atol=1e-12)


def gae_loop(rewards, values, lengths, gamma, lam):
    """The textbook backward recursion, one response at a time."""
    adv = np.zeros_like(rewards)
    for b, L in enumerate(lengths):
        running = 0.0
        for s in reversed(range(L)):
            next_v = values[b, s + 1] if s + 1 < L else 0.0
            delta = rewards[b, s] + gamma * next_v - values[b, s]
            running = delta + gamma * lam * running
            adv[b, s] = running
    return adv


def prefix_mask(lengths, T):
    return (np.arange(T)[None, :] < np.asarray(lengths)[:, None]).astype(np.float64)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 7), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_gae_matches_backward_loop(B, T, gamma, lam, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=B)
    rewards, values = rng.normal(size=(B, T)), rng.normal(size=(B, T))
    mask = prefix_mask(lengths, T)
    adv, ret = rl.gae(t(rewards * mask), t(values), t(mask), gamma, lam)
    want = gae_loop(rewards, values, lengths, gamma, lam)
    np.testing.assert_allclose(adv.numpy(), want, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), (want + values) * mask, atol=1e-10)


def test_gae_lambda_one_gives_returns_to_go_minus_values():
    """lam = 1, gamma = 1: A_t = sum_{s >= t} r_s - V_t (Monte Carlo advantage); lam = 0: the TD error."""
    r, v, m = t([[1.0, -2.0, 3.0]]), t([[0.3, 0.1, -0.4]]), t([[1.0, 1.0, 1.0]])
    adv, _ = rl.gae(r, v, m, 1.0, 1.0)
    np.testing.assert_allclose(adv[0].numpy(), [2.0 - 0.3, 1.0 - 0.1, 3.0 + 0.4], atol=1e-12)
    adv0, _ = rl.gae(r, v, m, 1.0, 0.0)
    np.testing.assert_allclose(adv0[0].numpy(), [1.0 + 0.1 - 0.3, -2.0 - 0.4 - 0.1, 3.0 + 0.4], atol=1e-12)


def test_gae_mixed_dtypes():
    """float32 values with float64 rewards (a policy in float32, rewards computed in float64) work."""
    adv, _ = rl.gae(t([[0.0, 0.0, 1.0]]), torch.full((1, 3), 0.5), torch.ones(1, 3), 1.0, 0.95)
    np.testing.assert_allclose(adv[0].numpy(), [0.45125, 0.475, 0.5], atol=1e-7)


# --------------------------------------------------------------------------------------------------
# padding never changes anything


def _pad(x, extra, fill):
    return torch.cat([x, torch.full((x.shape[0], extra), fill, dtype=x.dtype)], dim=1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 4), st.floats(-5, 5), st.integers(0, 2**31 - 1))
def test_padding_changes_no_loss_and_no_advantage(B, T, extra, fill, seed):
    """Appending padding columns (with arbitrary values in them) leaves every loss, advantage, return and
    reward of the real tokens unchanged, and the padded entries are 0."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=B)
    mask = t(prefix_mask(lengths, T))
    logp, old, ref = (t(-rng.exponential(size=(B, T))) for _ in range(3))
    values, old_values, rewards = (t(rng.normal(size=(B, T))) for _ in range(3))
    score = t(rng.normal(size=B))

    def everything(mask, logp, old, ref, values, old_values, rewards):
        kr, lr = rl.kl_penalized_rewards(score, logp, ref, mask, 0.1)
        adv, ret = rl.gae(rewards, values, mask, 1.0, 0.9)
        pl, ps = rl.clipped_policy_loss(logp, old, adv, mask, 0.2)
        vl, vs = rl.clipped_value_loss(values, old_values, ret, mask, 0.2)
        return {"kr": kr, "lr": lr, "adv": adv, "ret": ret, "pl": pl, "vl": vl, "mean": rl.masked_mean(logp, mask),
                "clipfrac": t(ps["clipfrac"]), "approx_kl": t(ps["approx_kl"]), "vfc": t(vs["vf_clipfrac"])}

    base = everything(mask, logp, old, ref, values, old_values, rewards)
    neg = -abs(fill) - 0.1  # padded log-probabilities are still log-probabilities
    padded = everything(_pad(mask, extra, 0.0), _pad(logp, extra, neg), _pad(old, extra, neg - 1),
                        _pad(ref, extra, neg), _pad(values, extra, fill), _pad(old_values, extra, -fill),
                        _pad(rewards, extra, fill))
    for k, v in base.items():
        p = padded[k]
        if v.dim() == 2:
            assert torch.equal(p[:, T:], torch.zeros_like(p[:, T:])), k
            p = p[:, :T]
        torch.testing.assert_close(p, v, rtol=1e-12, atol=1e-12, msg=k)


def test_whiten_over_real_tokens_only():
    x = t([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -7.0, 9.0]])
    m = t([[1, 1, 1, 0], [1, 1, 0, 0]])
    w = rl.whiten(x, m)
    real = w[m.bool()]
    assert abs(float(real.mean())) < 1e-12
    assert abs(float(real.var(unbiased=True)) - 1.0) < 1e-6
    assert float(w[~m.bool()].abs().max()) == 0.0
    w2 = rl.whiten(_pad(x, 2, 50.0), _pad(m, 2, 0.0))
    torch.testing.assert_close(w2[:, :4], w)


# --------------------------------------------------------------------------------------------------
# the clipped surrogate, by hand


@pytest.mark.parametrize("adv, ratio, loss, clipped, moves", [
    (+1.0, 1.1, -1.1, False, True),   # inside the range: the plain surrogate
    (+1.0, 1.5, -1.2, True, False),   # good token already made 1.5x likelier: capped at 1 + eps, no gradient
    (+1.0, 0.5, -0.5, False, True),   # good token made less likely: unclipped, pushed back up
    (-1.0, 1.5, +1.5, False, True),   # bad token made likelier: unclipped (pessimistic), pushed back down
    (-1.0, 0.5, +0.8, True, False),   # bad token already made half as likely: capped at 1 - eps, no gradient
    (-1.0, 0.9, +0.9, False, True),   # inside the range
    (+2.0, 1.2, -2.4, False, True),   # on the edge: both terms equal
])
def test_clipped_policy_loss_hand_cases(adv, ratio, loss, clipped, moves):
    old = t([[-1.0]])
    logp = (old + math.log(ratio)).clone().requires_grad_(True)
    out, stats = rl.clipped_policy_loss(logp, old, t([[adv]]), t([[1.0]]), clip_eps=0.2)
    assert float(out.detach()) == pytest.approx(loss, abs=1e-12)
    assert stats["clipfrac"] == (1.0 if clipped else 0.0)
    assert stats["approx_kl"] == pytest.approx(0.5 * math.log(ratio) ** 2, abs=1e-12)
    out.backward()
    g = float(logp.grad)
    if moves:  # d/dlogp of -A rho = -A rho (the edge case splits the tie but keeps the total)
        assert g == pytest.approx(-adv * ratio, abs=1e-12)
    else:
        assert g == 0.0


def test_clipped_policy_loss_averages_real_tokens_and_counts_clipfrac():
    ratios = t([[1.1, 1.5, 0.5], [0.5, 1.0, 7.0]])
    adv = t([[1.0, 1.0, 1.0], [-1.0, 3.0, 9.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    old = torch.zeros(2, 3, dtype=D) - 1.0
    loss, stats = rl.clipped_policy_loss(old + torch.log(ratios), old, adv, mask, 0.2)
    # per-token objectives: 1.1, 1.2, 0.5, -0.8, 3.0 (padding ignored)
    assert float(loss) == pytest.approx(-(1.1 + 1.2 + 0.5 - 0.8 + 3.0) / 5, abs=1e-12)
    assert stats["clipfrac"] == pytest.approx(2 / 5)


def test_first_ppo_step_is_the_vanilla_policy_gradient():
    """At ratio 1 (the first step of an update) the clipped loss has the gradient of -A log pi."""
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(3, 4, generator=g, dtype=D)
    adv = torch.randn(3, 4, generator=g, dtype=D)
    mask = t(prefix_mask([4, 2, 3], 4))
    a = logp.clone().requires_grad_(True)
    rl.clipped_policy_loss(a, logp, adv, mask, 0.2)[0].backward()
    b = logp.clone().requires_grad_(True)
    (-rl.masked_mean(adv * b, mask)).backward()
    torch.testing.assert_close(a.grad, b.grad)


# --------------------------------------------------------------------------------------------------
# the clipped value loss, by hand


@pytest.mark.parametrize("v, loss, clipped", [
    (0.1, 0.5 * 0.81, False),   # inside: 1/2 (0.1 - 1)^2
    (0.5, 0.5 * 0.64, True),    # moved 0.5 toward the return, clipped to 0.2: 1/2 (0.2 - 1)^2 (the larger)
    (-0.5, 0.5 * 2.25, False),  # moved away: the unclipped error is the larger
    (1.5, 0.5 * 0.64, True),    # overshot the return: the clipped one, 1/2 (0.2 - 1)^2, is larger
])
def test_clipped_value_loss_hand_cases(v, loss, clipped):
    out, stats = rl.clipped_value_loss(t([[v]]), t([[0.0]]), t([[1.0]]), t([[1.0]]), clip_eps=0.2)
    assert float(out) == pytest.approx(loss, abs=1e-12)
    assert stats["vf_clipfrac"] == (1.0 if clipped else 0.0)


def test_value_loss_at_old_values_is_the_squared_error():
    v, r = t([[0.3, -1.0, 2.0]]), t([[1.0, 0.5, 2.5]])
    out, _ = rl.clipped_value_loss(v, v.clone(), r, t([[1, 1, 1]]), 0.2)
    assert float(out) == pytest.approx(0.5 * float(((v - r) ** 2).mean()), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# per-token rewards: the score lands on the last real token


def test_score_lands_on_last_real_token():
    score = t([10.0, 20.0, 30.0])
    mask = t([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    logp = t([[-1.0, -2.0, -1.5, -0.5], [-0.3, -0.2, -9.0, -9.0], [-2.0, -9.0, -9.0, -9.0]])
    ref = t([[-1.5, -1.0, -1.5, -1.0], [-0.1, -0.6, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    rewards, log_ratio = rl.kl_penalized_rewards(score, logp, ref, mask, beta=0.1)
    want_ratio = (logp - ref) * mask
    torch.testing.assert_close(log_ratio, want_ratio)
    want = -0.1 * want_ratio
    want[0, 3] += 10.0
    want[1, 1] += 20.0
    want[2, 0] += 30.0
    torch.testing.assert_close(rewards, want)
    # the sum over tokens is the per-response KL-penalized reward
    torch.testing.assert_close(rewards.sum(1), score - 0.1 * want_ratio.sum(1))


def test_beta_zero_puts_only_the_score():
    rewards, _ = rl.kl_penalized_rewards(t([1.0, 2.0]), -torch.ones(2, 3, dtype=D), -2 * torch.ones(2, 3, dtype=D),
                                         t([[1, 1, 0], [1, 1, 1]]), 0.0)
    torch.testing.assert_close(rewards, t([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))


# --------------------------------------------------------------------------------------------------
# KL controllers


def test_adaptive_controller_toolchain_case():
    """TOOLCHAIN.md (Ziegler et al. 2019): beta 0.2, KL 8, target 6, n 128, horizon 10000 -> 0.200512."""
    c = rl.AdaptiveKLController(beta=0.2, target=6.0, horizon=10_000)
    assert c.update(8.0, 128) == pytest.approx(0.200512, abs=1e-12)
    assert c.beta == pytest.approx(0.200512, abs=1e-12)


@pytest.mark.parametrize("kl, error", [(6.0, 0.0), (6.6, 0.1), (5.4, -0.1), (7.2, 0.2), (100.0, 0.2),
                                       (4.8, -0.2), (0.0, -0.2)])
def test_adaptive_controller_clips_the_error(kl, error):
    c = rl.AdaptiveKLController(beta=0.5, target=6.0, horizon=1000)
    assert c.update(kl, 10) == pytest.approx(0.5 * (1 + error * 10 / 1000), abs=1e-12)


def test_adaptive_controller_moves_beta_toward_the_target_kl():
    c = rl.AdaptiveKLController(beta=1.0, target=1.0, horizon=100)
    up = [c.update(3.0, 10) for _ in range(5)]
    assert all(b2 > b1 for b1, b2 in zip([1.0] + up, up))  # KL above target: beta grows
    down = [c.update(0.1, 10) for _ in range(5)]
    assert all(b2 < b1 for b1, b2 in zip([up[-1]] + down, down))


def test_fixed_controller():
    c = rl.FixedKLController(0.3)
    assert c.update(123.0, 1000) == 0.3


# --------------------------------------------------------------------------------------------------
# validation


def test_validation_errors():
    m = t([[1, 1, 0]])
    x = t([[-1.0, -1.0, -1.0]])
    with pytest.raises(TypeError, match="torch tensor"):
        rl.gae(np.zeros((1, 3)), x, m)
    with pytest.raises(ValueError, match="shape"):
        rl.gae(t([[0.0, 0.0]]), x, m)
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        rl.gae(t([0.0, 0.0, 0.0]), x, m)
    with pytest.raises(ValueError, match="gamma and lam"):
        rl.gae(x, x, m, gamma=1.5)
    with pytest.raises(ValueError, match="only 0 and 1"):
        rl.gae(x, x, t([[1, 0.5, 0]]))
    with pytest.raises(ValueError, match="NaN"):
        rl.gae(t([[float("nan"), 0.0, 0.0]]), x, m)
    with pytest.raises(ValueError, match="prefix"):
        rl.kl_penalized_rewards(t([1.0]), x, x, t([[1, 0, 1]]), 0.1)
    with pytest.raises(ValueError, match="at least one unmasked"):
        rl.kl_penalized_rewards(t([1.0]), x, x, t([[0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="one score per response"):
        rl.kl_penalized_rewards(t([1.0, 2.0]), x, x, m, 0.1)
    with pytest.raises(ValueError, match="beta"):
        rl.kl_penalized_rewards(t([1.0]), x, x, m, -0.1)
    with pytest.raises(ValueError, match="clip_eps"):
        rl.clipped_policy_loss(x, x, x, m, clip_eps=1.5)
    with pytest.raises(ValueError, match="clip_eps"):
        rl.clipped_value_loss(x, x, x, m, clip_eps=0.0)
    with pytest.raises(ValueError, match="horizon"):
        rl.AdaptiveKLController(beta=0.1, target=6.0, horizon=0)
    with pytest.raises(ValueError, match="beta"):
        rl.FixedKLController(-1.0)
    c = rl.AdaptiveKLController(beta=0.1, target=6.0, horizon=100)
    with pytest.raises(ValueError, match="finite"):
        c.update(float("nan"), 10)
    with pytest.raises(ValueError, match="too large"):
        c.update(8.0, 500)  # 1 - 0.2 * 5 = 0: beta would vanish
    with pytest.raises(ValueError, match="n_steps"):
        c.update(8.0, -1)
    assert c.beta == 0.1  # failed updates leave beta alone


# --- issue 14: -inf on padding; issue 10: group advantages, aggregation, KL in the loss ---------------

def test_kl_penalized_rewards_neg_inf_on_padding_gives_zero_not_nan():
    score = torch.tensor([1.0])
    logp = torch.tensor([[-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.05, -0.95, -math.inf]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards, lr = rl.kl_penalized_rewards(score, logp, ref, mask, beta=1.0)
    assert not torch.isnan(rewards).any() and not torch.isnan(lr).any()
    assert rewards[0, 2].item() == 0.0 and lr[0, 2].item() == 0.0
    assert torch.allclose(rewards[0, :2], torch.tensor([-0.05, 1.05]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.floats(0.0, 2.0), st.integers(0, 2**31 - 1))
def test_kl_penalized_rewards_bit_identical_to_old_formula_on_finite_inputs(b, t, beta, seed):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=g) * 3
    ref = -torch.rand(b, t, generator=g) * 3
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    score = torch.randn(b, generator=g)
    rewards, lr = rl.kl_penalized_rewards(score, logp, ref, mask, beta)
    old_lr = (logp - ref) * mask  # the formula before the fix
    old = (-beta * old_lr).scatter_add(1, (lengths - 1)[:, None], score[:, None]) * mask
    assert torch.equal(lr, old_lr) and torch.equal(rewards, old)


def _loop_advantages(r, G, center, scale, eps):
    out = []
    for k in range(0, len(r), G):
        grp = [float(x) for x in r[k:k + G]]
        m = sum(grp) / G
        sd = math.sqrt(sum((x - m) ** 2 for x in grp) / (G - 1)) if G > 1 else 0.0
        for i, x in enumerate(grp):
            if center == "mean":
                a = x - m
            elif center == "loo":
                a = x - (sum(grp) - x) / (G - 1)
            else:
                a = x
            if scale == "std":
                a = 0.0 if (sd == 0 and center != "none") else a / (sd + eps)
            out.append(a)
    return out


@pytest.mark.parametrize("center", ["mean", "loo", "none"])
@pytest.mark.parametrize("scale", ["std", "none"])
def test_group_advantages_match_loops(center, scale):
    r = torch.tensor([1.0, 2.0, 4.0, 0.5, 0.5, 0.5, -1.0, 3.0, 0.0], dtype=torch.float64)
    got = rl.group_advantages(r, 3, center=center, scale=scale)
    want = _loop_advantages(r.tolist(), 3, center, scale, 1e-6)
    assert np.allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(got).all()
    # numpy in, numpy out
    assert isinstance(rl.group_advantages(r.numpy(), 3, center=center, scale=scale), np.ndarray)


def test_group_advantages_std_is_torch_std():
    r = torch.tensor([1.0, 2.0, 4.0, 7.0], dtype=torch.float64)
    got = rl.group_advantages(r, 4, scale="std", eps=0.0)
    assert torch.allclose(got, (r - r.mean()) / torch.std(r))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2**31 - 1), st.sampled_from(["std", "none"]))
def test_mean_centred_advantages_sum_to_zero_per_group(G, n, seed, scale):
    r = torch.randn(n * G, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    a = rl.group_advantages(r, G, center="mean", scale=scale)
    assert torch.allclose(a.reshape(n, G).sum(1), torch.zeros(n, dtype=torch.float64), atol=1e-9)


def test_group_advantages_reject_bad_arguments():
    r = torch.ones(6)
    with pytest.raises(ValueError):
        rl.group_advantages(r, 4)
    with pytest.raises(ValueError):
        rl.group_advantages(r, 1, center="loo", scale="none")
    with pytest.raises(ValueError):
        rl.group_advantages(r, 3, center="median")
    with pytest.raises(ValueError):
        rl.group_advantages(r, 3, scale="mad")
    with pytest.raises(ValueError):
        rl.group_advantages(torch.tensor([1.0, float("nan")]), 2)


def test_aggregate_loss_modes_against_loops():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert rl.aggregate_loss(loss, mask, "token-mean").item() == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert rl.aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert rl.aggregate_loss(loss, mask, "seq-mean-token-sum-norm", max_len=5).item() == pytest.approx(
        (6 / 5 + 4 / 5) / 2)
    assert rl.aggregate_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx((6 / 3 + 4 / 3) / 2)
    with pytest.raises(ValueError):
        rl.aggregate_loss(loss, mask, "sum")
    with pytest.raises(ValueError):
        rl.aggregate_loss(loss, mask, "seq-mean-token-sum-norm", max_len=0)


def test_kl_loss_terms_values_and_ratio():
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)
    old = torch.tensor([[-1.2, -2.0]], dtype=torch.float64)
    x = (logp - ref).detach()
    assert torch.allclose(rl.kl_loss_terms(logp, ref, "k1"), x)
    assert torch.allclose(rl.kl_loss_terms(logp, ref, "k2"), x ** 2 / 2)
    k3 = torch.exp(-x) - 1 + x
    assert torch.allclose(rl.kl_loss_terms(logp, ref, "k3"), k3)
    assert torch.allclose(rl.kl_loss_terms(logp, ref, "k3-ratio", old_logp=old),
                          torch.exp(logp.detach() - old) * k3)
    # on-policy (old = logp) the ratio is 1 and k3-ratio equals k3 in value
    assert torch.allclose(rl.kl_loss_terms(logp, ref, "k3-ratio", old_logp=logp.detach()), k3)
    rl.kl_loss_terms(logp, ref, "k2").sum().backward()
    assert torch.allclose(logp.grad, x)  # d/dlogp of x^2/2
    with pytest.raises(ValueError):
        rl.kl_loss_terms(logp, ref, "k3-ratio")
    with pytest.raises(ValueError):
        rl.kl_loss_terms(logp, ref, "k4")
