"""DPO: the loss's value at initialization, its Plackett-Luce generalization, and convergence to pi*."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rlhf_course import toy
from rlhf_course.dpo import (Preferences, bradley_terry_prob, dpo_loss, exact_dpo_loss, plackett_luce_loss,
                             preference_loss, sample_preferences, train_sampled_dpo, train_toy_dpo)
from rlhf_course.dpo_lm import LM_FAST, LMDPOConfig, evaluate_lm_preferences, make_lm_preferences, train_lm_dpo
from rlhf_course.objective import implicit_reward, optimal_policy

torch.set_num_threads(1)


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


# --------------------------------------------------------------------------------------------------
# the population loss


def test_exact_loss_is_ln2_at_initialization_and_batches():
    ref = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    r = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    assert exact_dpo_loss(torch.log(ref), ref, r, 0.5).item() == pytest.approx(math.log(2), abs=1e-12)
    logits = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batched = exact_dpo_loss(logits, ref, r, 0.5)
    assert batched.shape == (4,)
    for i in range(4):
        assert batched[i].item() == pytest.approx(exact_dpo_loss(logits[i], ref, r, 0.5).item(), rel=1e-12)


def test_exact_loss_is_the_expectation_of_the_sampled_loss():
    """Enumerate (pair, label): the population loss is the probability-weighted mean of the per-comparison loss."""
    ref = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    r = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    logits = torch.tensor([0.4, -0.2, 1.0], dtype=torch.float64)
    beta = 0.7
    h = torch.log_softmax(logits, -1) - torch.log(ref)
    total = 0.0
    for a in range(3):
        for b in range(3):
            p = bradley_terry_prob(r[a], r[b])
            for w, l, q in ((a, b, p), (b, a, 1 - p)):
                loss, _ = dpo_loss(h[w:w + 1], h[l:l + 1], torch.zeros(1, dtype=torch.float64),
                                   torch.zeros(1, dtype=torch.float64), beta)
                total += float(ref[a] * ref[b]) * q * loss.item()
    assert exact_dpo_loss(logits, ref, r, beta).item() == pytest.approx(total, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# finite preference data drawn from a known reward


def test_sampled_labels_follow_bradley_terry():
    prefs = sample_preferences([0.5, 0.5], [1.0, 0.0], 20_000, seed=3)
    distinct = prefs.chosen != prefs.rejected
    share = float(np.mean(prefs.chosen[distinct] == 0))
    assert share == pytest.approx(bradley_terry_prob(1.0, 0.0), abs=0.02)  # 0.731; sd of the share ~0.004
    assert float(np.mean(distinct)) == pytest.approx(0.5, abs=0.02)
    scaled = sample_preferences([0.5, 0.5], [1.0, 0.0], 20_000, seed=3, scale=3.0)
    d = scaled.chosen != scaled.rejected
    assert float(np.mean(scaled.chosen[d] == 0)) == pytest.approx(bradley_terry_prob(3.0, 0.0), abs=0.02)


def test_sampled_rankings_follow_plackett_luce():
    r = np.array([1.0, 0.0, -0.5])
    prefs = sample_preferences(np.full(3, 1 / 3), r, 30_000, k=3, seed=4)
    perm = np.all(np.sort(prefs.ranking, 1) == [0, 1, 2], axis=1)  # the draws that hold all three outputs
    first = np.bincount(prefs.ranking[perm, 0], minlength=3) / perm.sum()
    np.testing.assert_allclose(first, np.exp(r) / np.exp(r).sum(), atol=0.03)


def test_subsets_are_nested():
    big = sample_preferences(toy.make_bandit().ref_probs, toy.make_bandit().scores, 500, seed=1)
    small = sample_preferences(toy.make_bandit().ref_probs, toy.make_bandit().scores, 50, seed=1)
    assert len(big) == 1000 and len(big.subset(100)) == 100
    assert np.array_equal(big.subset(100).prompt, small.prompt)


@pytest.mark.parametrize("name", ["bandit", "sequences"])
def test_sampled_dpo_converges_to_optimal_policy_as_data_grows(name):
    """Fixed seed: TV(pi_DPO, pi*_beta) falls as the dataset grows, and is small at 10^5 comparisons per prompt."""
    problem = toy.make_bandit() if name == "bandit" else toy.make_sequences()
    beta = 1.0
    star = toy.optimum(problem, beta)
    model = problem.ref_probs if name == "bandit" else problem
    data = sample_preferences(problem.ref_probs, problem.scores, 100_000, seed=0)
    tvs = [toy.tv_distance(train_sampled_dpo(model, data.subset(n * problem.n_prompts), beta, steps=400), star)
           for n in (1_000, 10_000, 100_000)]
    assert tvs[0] > tvs[1] > tvs[2]
    assert tvs[2] < 0.02


def test_implicit_reward_recovers_the_reward_up_to_a_constant():
    problem = toy.make_bandit()
    beta = 0.5
    data = sample_preferences(problem.ref_probs, problem.scores, 100_000, seed=2)
    pi = train_sampled_dpo(problem.ref_probs, data, beta, steps=400)
    shift = implicit_reward(pi, problem.ref_probs, beta) - problem.scores  # r - beta log Z(x) - r
    spread = (shift.max(1).values - shift.min(1).values).max().item()
    assert spread < 0.05
    # and the constant is -beta log Z(x) of each prompt
    from rlhf_course.objective import log_partition
    np.testing.assert_allclose(shift.mean(1).numpy(),
                               -beta * log_partition(problem.ref_probs, problem.scores, beta).numpy(), atol=0.05)


def test_rankings_also_converge_and_one_dimensional_tables_work():
    ref, r = np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.0, -1.0])
    data = sample_preferences(ref, r, 50_000, k=3, seed=5)
    pi = train_sampled_dpo(ref, data, 1.0, steps=400)
    assert pi.shape == (3,)
    assert 0.5 * np.abs(pi.numpy() - optimal_policy(ref, r, 1.0)).sum() < 0.02


def test_preference_loss_is_ln2_at_the_reference_and_matches_dpo_loss():
    problem = toy.make_sequences()
    data = sample_preferences(problem.ref_probs, problem.scores, 300, seed=0)
    ref_logp = torch.log(problem.ref_probs)
    assert preference_loss(ref_logp, ref_logp, data, 0.3).item() == pytest.approx(math.log(2), abs=1e-12)
    logp = torch.log_softmax(torch.randn(ref_logp.shape, dtype=torch.float64,
                                         generator=torch.Generator().manual_seed(1)), -1)
    p, c, rj = (torch.as_tensor(a) for a in (data.prompt, data.chosen, data.rejected))
    direct, _ = dpo_loss(logp[p, c], logp[p, rj], ref_logp[p, c], ref_logp[p, rj], 0.3)
    assert preference_loss(logp, ref_logp, data, 0.3).item() == pytest.approx(direct.item(), rel=1e-12)


# --------------------------------------------------------------------------------------------------
# the language model (chapter 6's smoke models)


@pytest.fixture(scope="module")
def smoke_reference(tmp_path_factory):
    from rlhf_course.sft import PRESETS, load_model, train_sft

    out = train_sft(PRESETS["smoke"], tmp_path_factory.mktemp("sft"), device="cpu", progress=False)
    return load_model(out)


def test_lm_dpo_smoke_starts_at_ln2_and_lowers_the_loss(smoke_reference):
    from rlhf_course.world import World

    world = World()
    cfg = LM_FAST
    prefs = make_lm_preferences(smoke_reference, world, cfg)
    assert len(prefs) == cfg.n_pairs
    decided = prefs.chosen_score != prefs.rejected_score
    assert np.mean(prefs.chosen_score[decided] > prefs.rejected_score[decided]) > 0.6  # labels follow the gold reward
    before = evaluate_lm_preferences(smoke_reference, smoke_reference, prefs, cfg.beta)
    assert before["loss"] == pytest.approx(math.log(2), abs=1e-6)  # float32 log-probabilities
    run = train_lm_dpo(smoke_reference, world, cfg, prefs=prefs, progress=False)
    assert run.log[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # the first step sees pi = pi_ref
    assert len(run.log) == cfg.steps
    assert run.evals[0]["step"] == 0 and run.evals[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    after = evaluate_lm_preferences(run.policy, smoke_reference, prefs, cfg.beta)
    assert after["loss"] < math.log(2) - 0.01
    assert after["accuracy"] > 0.5
    assert run.evals[-1]["kl"] > 0.0
    # the reference model was not touched
    assert evaluate_lm_preferences(smoke_reference, smoke_reference, prefs, cfg.beta)["loss"] == pytest.approx(
        math.log(2), abs=1e-6)


def test_lm_preferences_with_proxy_labels_need_a_reward_model(smoke_reference):
    from rlhf_course.world import World

    with pytest.raises(ValueError, match="reward model"):
        make_lm_preferences(smoke_reference, World(), LMDPOConfig(labels="proxy", n_pairs=4, max_new_tokens=4))


def test_sampled_and_lm_validation():
    with pytest.raises(ValueError, match="same shape"):
        sample_preferences([0.5, 0.5], [1.0, 0.0, 2.0], 10)
    with pytest.raises(ValueError, match="sum to 1"):
        sample_preferences([0.5, 0.6], [1.0, 0.0], 10)
    with pytest.raises(ValueError, match="n must be"):
        sample_preferences([0.5, 0.5], [1.0, 0.0], 0)
    with pytest.raises(ValueError, match="k must be"):
        sample_preferences([0.5, 0.5], [1.0, 0.0], 10, k=1)
    with pytest.raises(ValueError, match="scale"):
        sample_preferences([0.5, 0.5], [1.0, 0.0], 10, scale=-1.0)
    with pytest.raises(ValueError, match="finite"):
        sample_preferences([0.5, 0.5], [float("nan"), 0.0], 10)
    data = sample_preferences([0.5, 0.5], [1.0, 0.0], 10)
    with pytest.raises(ValueError, match="> 0 everywhere"):
        train_sampled_dpo([1.0, 0.0], data, 1.0)
    with pytest.raises(ValueError, match="beyond"):
        train_sampled_dpo([0.2, 0.3, 0.5][:1] + [0.8], sample_preferences([0.3, 0.3, 0.4], [0, 1, 2], 20), 1.0)
    with pytest.raises(ValueError, match="steps"):
        train_sampled_dpo([0.5, 0.5], data, 1.0, steps=0)
    with pytest.raises(TypeError, match="Preferences"):
        preference_loss(torch.zeros(1, 2), torch.zeros(1, 2), [(0, 1)], 1.0)
    with pytest.raises(ValueError, match="k >= 2"):
        Preferences(np.zeros(3, dtype=np.int64), np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="rejected is defined for pairs"):
        sample_preferences([0.5, 0.5], [1.0, 0.0], 5, k=3).rejected
    with pytest.raises(ValueError, match="same number K"):
        exact_dpo_loss(torch.zeros(3), torch.ones(2) / 2, torch.zeros(2), 1.0)
    for bad in (dict(beta=0.0), dict(lr=1.5), dict(n_pairs=0), dict(labels="human"), dict(epochs=1.5),
                dict(label_temperature=float("inf"))):
        with pytest.raises(ValueError, match="LMDPOConfig"):
            LMDPOConfig(**bad)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.05, 1.0), min_size=3, max_size=5), st.lists(st.floats(-3, 3), min_size=5, max_size=5),
       st.lists(st.floats(-4, 4), min_size=5, max_size=5), st.floats(0.1, 5.0))
def test_population_loss_is_bounded_by_the_label_entropy_and_attained_at_optimum(w, r, logits, beta):
    """Step 4 of the chapter's theorem: every policy's population loss is at least the weighted Bernoulli
    entropy of the rater's labels, and pi*_beta attains it."""
    k = len(w)
    ref = torch.tensor(w, dtype=torch.float64) / sum(w)
    rew = torch.tensor(r[:k], dtype=torch.float64)
    p = torch.sigmoid(rew[:, None] - rew[None, :])
    bound = (ref[:, None] * ref[None, :] * -(p * torch.log(p) + (1 - p) * torch.log1p(-p))).sum().item()
    star = torch.as_tensor(optimal_policy(ref.numpy(), rew.numpy(), beta))
    assert exact_dpo_loss(torch.log(star), ref, rew, beta).item() == pytest.approx(bound, rel=1e-9, abs=1e-12)
    assert exact_dpo_loss(torch.tensor(logits[:k], dtype=torch.float64), ref, rew, beta).item() >= bound - 1e-12
