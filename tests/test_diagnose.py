"""Reading a run: the detectors on metric streams whose answer is known, the loader, the sample statistics,
and the silent bug set: every buggy piece really differs from its correct counterpart, and every correct
piece agrees with the package's own implementation (or with an independent computation)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rlhf_course import diagnose as d
from rlhf_course.gpt import GPT, GPTConfig, generate
from rlhf_course.kl import k3
from rlhf_course.rl import kl_penalized_rewards
from rlhf_course.sequences import token_logprobs


# --------------------------------------------------------------------------------------------------
# detectors on synthetic streams


def test_overoptimization_fires_only_when_gold_falls_while_proxy_rises():
    t = np.linspace(0, 1, 50)
    proxy = 2 * t
    gold_peaked = np.sin(np.pi * t)  # peak at the middle, back to 0
    f = d.detect_overoptimization(proxy, gold_peaked, min_drop=0.5, window=1)
    assert f.fired and abs(f.step - 24.5) <= 1 and f.value == pytest.approx(1.0, abs=0.01)
    assert not d.detect_overoptimization(proxy, t, min_drop=0.1, window=1).fired  # gold rises with proxy
    # gold falls but the proxy falls too: a run that got worse, not one that exploits the proxy
    assert not d.detect_overoptimization(gold_peaked, gold_peaked, min_drop=0.5, window=1).fired


def test_kl_blowup_first_step_and_nonfinite():
    kl = np.array([0.1, 0.5, 2.0, 7.0, 12.0, 30.0])
    f = d.detect_kl_blowup(kl, limit=10)
    assert f.fired and f.step == 4 and f.value == 30.0
    assert not d.detect_kl_blowup(kl, limit=100).fired
    g = d.detect_kl_blowup([0.1, float("nan"), 0.2], limit=10)
    assert g.fired and g.step == 1
    with pytest.raises(ValueError):
        d.detect_kl_blowup(kl, limit=-1)


def test_entropy_collapse():
    ent = 2.0 * np.exp(-np.linspace(0, 3, 30))
    f = d.detect_entropy_collapse(ent, fraction=0.5, window=1)
    assert f.fired and ent[f.step] < 1.0 <= ent[f.step - 1]
    assert not d.detect_entropy_collapse(np.full(20, 1.5), 0.5).fired


def test_update_spikes_and_oscillation():
    akl = np.array([0.01, 0.01, 0.2, 0.01])
    cf = np.array([0.1, 0.5, 0.1, 0.1])
    f = d.detect_update_spikes(akl, cf, approx_kl_limit=0.05, clip_limit=0.3)
    assert f.fired and f.step == 1 and f.value == 0.5
    assert not d.detect_update_spikes(akl[:2] * 0, cf[:2] * 0).fired
    steady = np.linspace(0, 1, 40)
    jumpy = steady + np.where(np.arange(40) % 2, 0.5, -0.5)
    assert not d.detect_oscillation(steady, limit=0.1).fired
    assert d.detect_oscillation(jumpy, limit=0.1).value == pytest.approx(1.0, rel=0.05)


def test_smooth_is_a_trailing_mean_that_skips_nan():
    x = np.array([1.0, 3.0, np.nan, 5.0])
    assert np.allclose(d.smooth(x, 2), [1.0, 2.0, 3.0, 5.0])
    with pytest.raises(ValueError):
        d.smooth(x, 0)


@pytest.mark.parametrize("kind,expect", [
    ("healthy", set()),
    ("hacking", {"over-optimization", "KL blow-up", "entropy collapse"}),
    ("unstable", {"KL blow-up", "update spikes"}),
    ("stalled", set()),
    ("regressing", {"over-optimization", "KL blow-up"}),
    ("adaptive", set()),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_example_logs_have_the_signature_of_their_kind(kind, expect, seed):
    log = d.example_log(kind, seed=seed)
    fired = {f.name for f in d.diagnose(log, kl_limit=8.0) if f.fired}
    assert expect <= fired
    if not expect:
        assert not fired
    if kind in ("regressing", "hacking"):  # calm updates: the optimizer is not the problem
        assert not d.detect_update_spikes(log["approx_kl"], log["clipfrac"], 0.1, 0.3).fired


def test_example_log_of_a_kl_target_holds_it_and_deployment_drifts():
    adaptive = d.example_log("adaptive")
    assert abs(adaptive["kl"][-20:].mean() - 1.2) < 0.1 and adaptive["beta"][-1] > adaptive["beta"][0]
    live = d.example_log("deployed")
    assert live["gold"][-10:].mean() < live["gold"][:10].mean() - 0.5
    assert abs(live["proxy"][-10:].mean() - live["proxy"][:10].mean()) < 0.2
    assert live["rm_human_agreement"][-10:].mean() < 0.5 < live["rm_human_agreement"][:10].mean()


def test_the_exercise_logs_match_the_graded_answer():
    from rlhf_course.questions.ex07 import QUESTIONS

    label = {"healthy": "A", "hacking": "B", "unstable": "C", "stalled": "D"}
    answer = next(q for q in QUESTIONS if q.id == "07.read_logs").answer
    assert answer == {name: label[kind] for name, (kind, _) in d._EXERCISE_LOGS.items()}
    assert set(d.exercise_logs()) == set(answer)


def test_example_logs_are_deterministic_and_validated():
    a, b = d.example_log("hacking", seed=3), d.example_log("hacking", seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="unknown example kind"):
        d.example_log("nope")


def test_bad_streams_are_rejected():
    with pytest.raises(ValueError):
        d.detect_overoptimization([1, 2, 3], [1, 2])
    with pytest.raises(TypeError):
        d.detect_kl_blowup("kl", 1.0)
    with pytest.raises(ValueError):
        d.detect_entropy_collapse([], 0.5)


# --------------------------------------------------------------------------------------------------
# loading a run, samples


def test_load_run_reads_columns_samples_and_skips_a_torn_line(tmp_path):
    lines = [{"step": 0, "reward": 0.1, "kl": None, "samples": ["the food was good ."]},
             {"step": 1, "reward": 0.3, "kl": 0.2, "samples": ["the food was great ."]}]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"step": 2, "rew'
    (tmp_path / "metrics.jsonl").write_text(text)
    (tmp_path / "config.json").write_text(json.dumps({"beta": 0.1}))
    run = d.load_run(tmp_path)
    assert run.n == 2 and np.allclose(run["reward"], [0.1, 0.3])
    assert np.isnan(run["kl"][0]) and run["kl"][1] == 0.2
    assert run.samples[1] == ["the food was great ."] and run.config == {"beta": 0.1}
    with pytest.raises(KeyError, match="logged no"):
        run["gold"]
    with pytest.raises(FileNotFoundError):
        d.load_run(tmp_path / "missing")


def test_repetition_rate_and_distinct_n():
    assert d.repetition_rate("the food was good .") == 0.0
    assert d.repetition_rate("great great great great great", n=1) == pytest.approx(0.8)
    # bigrams of "a b a b a b": ab ba ab ba ab -> 3 of 5 repeat an earlier one
    assert d.repetition_rate("a b a b a b", n=2) == pytest.approx(0.6)
    assert d.distinct_n(["a b c", "a b d"], n=2) == pytest.approx(3 / 4)
    with pytest.raises(TypeError):
        d.repetition_rate([1, 2])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=0, max_size=12))
def test_repetition_rate_is_a_share(words):
    r = d.repetition_rate(" ".join(words), n=1)
    assert 0.0 <= r < 1.0
    assert (r == 0.0) == (len(set(words)) == len(words))


def test_ranking_agreement():
    g = np.array([0.0, 1.0, 2.0, 3.0])
    assert d.ranking_agreement(g * 5 + 1, g) == 1.0
    assert d.ranking_agreement(-g, g) == 0.0
    assert d.ranking_agreement(np.array([0.0, 2.0, 1.0, 3.0]), g) == pytest.approx(5 / 6)
    with pytest.raises(ValueError):
        d.ranking_agreement(g, np.zeros(4))  # no pair is decided
    with pytest.raises(ValueError):
        d.ranking_agreement(g[:3], g)


def test_prompt_world_replaces_only_the_prompts():
    from rlhf_course.world import World

    w = World()
    pw = d.PromptWorld(["the food was not", "the staff is not"], w)
    assert pw.prompts().shape == (2, 5) and (pw.prompts()[:, 0] == w.tokenizer.bos_id).all()
    toks = np.array([w.tokenizer.encode("the food was not good . <eos>")])
    assert np.allclose(pw.gold_reward(toks, 5), w.gold_reward(toks, 5))
    with pytest.raises(ValueError):
        d.PromptWorld(["the food was", "the staff is not"])


def test_sampling_helpers_on_a_tiny_model():
    from rlhf_course.reward_model import RewardModel, score_batched
    from rlhf_course.sft import model_config
    from rlhf_course.world import World

    torch.manual_seed(0)
    w = World()
    cfg = model_config(w, n_layer=1, n_head=1, n_embd=16, block_size=24)
    model, rm = GPT(cfg).eval(), RewardModel(cfg).eval()
    e = d.sample_and_score(model, rm, w, n=16, max_new_tokens=6, seed=0)
    P = e["prompt_len"]
    assert e["proxy"].shape == e["gold"].shape == (16,) and len(e["texts"]) == 16
    assert np.allclose(e["gold"], w.gold_reward(e["tokens"].numpy(), P))
    assert np.allclose(e["proxy"], score_batched(rm, e["tokens"], e["mask"], P).numpy())
    # the sequence log-probability is the sum of the sampled tokens' log-probabilities
    lp = d.response_logprob_np(model, e["tokens"], e["mask"], P)
    with torch.no_grad():
        logits, _ = model(e["tokens"])
    per_tok = token_logprobs(logits[:, P - 1:-1], e["tokens"][:, P:])
    assert np.allclose(lp, (per_tok * e["mask"]).sum(1).numpy(), atol=1e-4)
    stats = d.response_stats(model, model, rm, d.PromptWorld(["the food was"], w), n=32, max_new_tokens=6)
    assert np.allclose(stats["logp"], stats["ref_logp"]) and stats["count"].sum() == 32
    assert (np.diff(stats["logp"]) <= 1e-9).all()  # sorted from the most likely


def test_log_table():
    table = d.log_table(d.example_log("healthy"), ["proxy", "kl"], [0, 59])
    assert table.count("\n") == 3 and table.startswith("| step | proxy | kl |")


# --------------------------------------------------------------------------------------------------
# the silent bug set


def _batch():
    rng = np.random.default_rng(0)
    logp = -rng.exponential(1.0, (3, 5))
    ref = -rng.exponential(1.0, (3, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=float)
    return np.array([0.7, -1.2, 2.0]), logp, ref, mask


def test_correct_rewards_is_the_package_function():
    score, logp, ref, mask = _batch()
    want, _ = kl_penalized_rewards(torch.tensor(score), torch.tensor(logp), torch.tensor(ref), torch.tensor(mask), 0.1)
    assert np.allclose(d.correct_rewards(score, logp, ref, mask, 0.1), want.numpy())


def test_wrong_token_bug_drops_the_score_of_padded_responses():
    score, logp, ref, mask = _batch()
    bad, good = d.per_token_rewards(score, logp, ref, mask, 0.1), d.correct_rewards(score, logp, ref, mask, 0.1)
    total_bad, total_good = bad.sum(1), good.sum(1)
    assert np.allclose(total_good - total_bad, [score[0], 0.0, score[2]])  # lost exactly on padded rows
    assert np.allclose(bad[1], good[1])  # the full-length row is right


def test_kl_sign_bug_rewards_moving_away():
    score, logp, ref, mask = _batch()
    bad, good = d.shaped_rewards(score, logp, ref, mask, 0.1), d.correct_rewards(score, logp, ref, mask, 0.1)
    assert not np.allclose(bad, good)
    # same score placement; the penalty part has the opposite sign
    penalty = -0.1 * (logp - ref) * mask
    assert np.allclose(bad + penalty, good - penalty)
    assert np.allclose(bad.sum(1) - score, -(good.sum(1) - score))


def test_pad_is_eos_bug_masks_the_end_token():
    eos = 2
    resp = np.array([[5, 6, eos, eos, eos], [7, eos, eos, eos, eos], [5, 6, 7, 8, 9]])
    bad, good = d.response_mask(resp, eos), d.correct_response_mask(resp, eos)
    assert np.array_equal(good, [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert np.array_equal(bad, [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])  # the end token is lost


def test_correct_response_mask_matches_generate():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=8, block_size=16, n_layer=1, n_head=1, n_embd=8, banned_tokens=(0,))
    model = GPT(cfg)
    with torch.no_grad():
        model.wte.weight[3] += 1.5  # make <eos> = 3 likely, so some responses end early
    prompts = torch.ones(64, 2, dtype=torch.long)
    tokens, mask, _ = generate(model, prompts, 8, eos_id=3, pad_id=0, generator=torch.Generator().manual_seed(1))
    assert 0 < mask.sum(1).lt(8).float().mean() < 1  # some ended, some did not
    assert np.array_equal(d.correct_response_mask(tokens[:, 2:].numpy(), 3), mask.numpy())


def test_temperature_bug_logprobs_are_of_another_distribution():
    logits = np.random.default_rng(1).normal(0, 2, (200, 7))
    t_bad, lp_bad = d.sample_with_temperature(logits, 0.6, np.random.default_rng(5))
    t_good, lp_good = d.correct_sample_with_temperature(logits, 0.6, np.random.default_rng(5))
    assert np.array_equal(t_bad, t_good)  # same draws, same tokens
    assert np.allclose(lp_good, token_logprobs(logits, t_good, 0.6))
    assert np.abs(lp_bad - lp_good).max() > 0.1
    # at T = 1 there is nothing to get wrong
    _, a = d.sample_with_temperature(logits, 1.0, np.random.default_rng(5))
    _, b = d.correct_sample_with_temperature(logits, 1.0, np.random.default_rng(5))
    assert np.allclose(a, b)


def test_topk_bug_logprobs_are_too_low_by_the_topk_mass():
    logits = np.random.default_rng(2).normal(0, 1.5, (300, 9))
    t_bad, lp_bad = d.sample_top_k(logits, 3, np.random.default_rng(7))
    t_good, lp_good = d.correct_sample_top_k(logits, 3, np.random.default_rng(7))
    assert np.array_equal(t_bad, t_good)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    top_mass = np.sort(p, 1)[:, -3:].sum(1)
    assert np.allclose(lp_good - lp_bad, -np.log(top_mass))  # log(mass of the top k) is what goes missing
    # the sampled tokens are only ever among the top 3, with the top-k distribution's frequencies
    ranks = (logits > logits[np.arange(300), t_good][:, None]).sum(1)
    assert ranks.max() <= 2


def test_topk_sampler_frequencies_match_the_correct_logprobs():
    logits = np.tile(np.array([[2.0, 1.0, 0.5, -1.0, -3.0]]), (20000, 1))
    tokens, lp = d.correct_sample_top_k(logits, 2, np.random.default_rng(0))
    freq = np.bincount(tokens, minlength=5) / tokens.size
    p = np.exp(lp[tokens == 0][0])
    assert freq[0] == pytest.approx(p, abs=0.01) and freq[2:].sum() == 0


def test_k3_bug_loses_precision_near_zero():
    # TOOLCHAIN.md: the naive form in float32 is 3.3 times too large at log r = 1e-4
    logp, ref = np.array([-1e-4]), np.array([0.0])
    bad, good = d.k3_estimate(logp, ref), d.correct_k3(logp, ref)
    assert bad[0] / good[0] == pytest.approx(3.3, rel=0.02)
    x = 1e-4  # exact value in float64
    assert good[0] == pytest.approx(math.expm1(x) - x, rel=1e-3)
    assert np.allclose(d.correct_k3(np.array([-2.0]), np.array([-1.0])), math.e - 2, rtol=1e-6)
    assert np.allclose(good, k3(np.float32(logp), np.float32(ref)))
    # far from zero both agree: the bug is silent where one would test it casually
    assert d.k3_estimate(np.array([-0.5]), np.array([0.0]))[0] == pytest.approx(math.expm1(0.5) - 0.5, rel=1e-5)


def test_every_bug_in_the_set_differs_from_its_correct_piece():
    cases = {
        "wrong_token": _batch() + (0.1,),
        "kl_sign": _batch() + (0.1,),
        "pad_is_eos": (np.array([[4, 5, 2, 2], [4, 2, 2, 2]]), 2),
    }
    for key, args in cases.items():
        bug = d.SILENT_BUGS[key]
        assert not np.allclose(bug.piece(*args), bug.correct(*args)), key
    logits = np.random.default_rng(0).normal(0, 2, (5, 6))
    for key, arg in (("no_temperature", 0.5), ("topk_full_softmax", 2)):
        bug = d.SILENT_BUGS[key]
        a = bug.piece(logits, arg, np.random.default_rng(1))
        b = bug.correct(logits, arg, np.random.default_rng(1))
        assert np.array_equal(a[0], b[0]) and not np.allclose(a[1], b[1]), key
    bug = d.SILENT_BUGS["k3_unstable"]
    assert not np.allclose(bug.piece([-1e-4], [0.0]), bug.correct([-1e-4], [0.0]), rtol=0.1, atol=0)
    assert set(d.PIECES.values()) == {b.piece for b in d.SILENT_BUGS.values()}


def test_topk_logits_validates_k():
    with pytest.raises(ValueError):
        d.topk_logits(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError):
        d.topk_logits(np.zeros((2, 3)), 4)
