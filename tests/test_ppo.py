"""Chapter 6's pipeline: the smoke preset end to end, resuming, where the score lands, padding, configs; the
iteration piece by piece: whitening, the rewards' options, the importance ratio at the start of the update,
loading a run's policy."""
import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from rlhf_course.cli import main
from rlhf_course.gpt import GPT, GPTConfig
from rlhf_course.ppo import PRESETS, PPOConfig, PPOTrainer, RunInterrupted, load_policy, train_ppo
from rlhf_course.reward_model import RewardModelConfig
from rlhf_course.rl import kl_penalized_rewards, last_token_index, masked_mean, masked_var, whiten
from rlhf_course.runs import read_jsonl
from rlhf_course.sft import SFTConfig, ensure_sft

SMOKE = PRESETS["smoke"]
METRICS = {"proxy", "gold", "kl", "kl_k3", "entropy", "clipfrac", "approx_kl", "value_loss", "explained_variance",
           "samples", "beta", "fluency", "length"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """`rlhf-course ppo --preset smoke` on an empty folder: runs the reference and reward-model stages first."""
    out = tmp_path_factory.mktemp("ch06") / "run"
    assert main(["ppo", "--preset", "smoke", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_smoke_pipeline_end_to_end(pipeline):
    for f in ("sft/model.pt", "sft/summary.json", "reward_model/model.pt", "reward_model/summary.json"):
        assert (pipeline / f).is_file(), f
    run = pipeline / f"ppo-beta{SMOKE.ppo.beta:g}"
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"):
        assert (run / f).is_file(), f
    recs = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(SMOKE.ppo.iterations))
    assert all(METRICS <= r.keys() for r in recs)
    assert all(math.isfinite(r["kl"]) and math.isfinite(r["kl_k3"]) for r in recs)
    assert recs[0]["kl"] == pytest.approx(0.0, abs=1e-5)           # the policy starts as the reference
    assert recs[0]["explained_variance"] == pytest.approx(0.0, abs=1e-6)  # value head starts at exactly 0
    first, last = recs[0]["proxy"], sum(r["proxy"] for r in recs[-2:]) / 2
    assert last > first + 0.2, (first, last)                        # the proxy reward rises
    assert len(recs[-1]["samples"]) == SMOKE.ppo.log_samples and isinstance(recs[-1]["samples"][0]["text"], str)
    assert (pipeline / ".gitignore").read_text().strip().endswith("*")  # run outputs stay out of git


def _strip_times(recs):
    return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "seconds"} for r in recs]


def test_a_killed_run_resumes_as_if_never_stopped(pipeline, tmp_path):
    cfg = replace(SMOKE.ppo, iterations=7, checkpoint_every=3)
    sft, rm = pipeline / "sft", pipeline / "reward_model"
    whole = train_ppo(cfg, tmp_path / "whole", sft, rm, device="cpu", progress=False)
    with pytest.raises(RunInterrupted):  # "killed" after step 3: the last checkpoint is from step 2
        train_ppo(cfg, tmp_path / "cut", sft, rm, device="cpu", progress=False, stop_after=4)
    assert len(read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == 4
    with pytest.raises(ValueError, match="already holds a PPO run"):
        train_ppo(cfg, tmp_path / "cut", sft, rm, device="cpu", progress=False)
    with pytest.raises(RunInterrupted):  # killed again, right after a resume
        train_ppo(cfg, tmp_path / "cut", sft, rm, device="cpu", progress=False, resume=True, stop_after=2)
    cut = train_ppo(cfg, tmp_path / "cut", sft, rm, device="cpu", progress=False, resume=True)
    a, b = read_jsonl(whole / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(7))
    assert _strip_times(a) == _strip_times(b)  # bit for bit on the CPU
    ta = torch.load(whole / "checkpoint.pt", weights_only=False)
    tb = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(ta["policy"][k], tb["policy"][k]) for k in ta["policy"])


def _tiny_trainer(beta=0.0, seed=0, **kw):
    torch.manual_seed(seed)
    gcfg = GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=2, n_embd=16, banned_tokens=(0, 1))
    reference = GPT(gcfg)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0, 0.5)
    policy = GPT(replace(gcfg, value_head=True))
    policy.load_state_dict(reference.state_dict(), strict=False)
    cfg = replace(PPOConfig(), batch_size=32, max_new_tokens=10, beta=beta, seed=seed, **kw)
    scores = lambda tokens, mask, P: torch.arange(1, tokens.shape[0] + 1, dtype=torch.float32)  # noqa: E731
    prompts = torch.randint(3, 16, (8, 4), generator=torch.Generator().manual_seed(seed))
    # token 3 plays <eos>: this random model emits it often enough that some responses end, some are cut off
    return PPOTrainer(cfg, policy, reference, scores, prompts, eos_id=3, pad_id=0)


def _batch(t, tokens, mask):
    """Steps 2-4 of an iteration: score, rewards, advantages."""
    return t.advantages(t.rewards(t.score(tokens, mask)))


@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_the_score_lands_on_the_last_real_token(beta):
    """The token that completed the response (its <eos>, or its last token when cut off) gets the score."""
    t = _tiny_trainer(beta)
    tokens, mask = t.rollout()
    b = _batch(t, tokens, mask)
    last = last_token_index(mask)
    lengths = mask.sum(1).long()
    resp = tokens[:, 4:]
    ended = resp[torch.arange(len(last)), last] == 3
    assert ended.any() and (~ended).any()  # both kinds occur in this batch
    assert (lengths[~ended] == 10).all()  # cut off at max_new_tokens
    score = torch.arange(1, 33, dtype=torch.float32)
    penalty = -beta * (b.old_logp - b.ref_logp) * mask
    bonus = b.rewards - penalty
    expected = torch.zeros_like(bonus)
    expected[torch.arange(32), last] = score
    assert torch.allclose(bonus, expected, atol=1e-5)
    assert (b.rewards[mask == 0] == 0).all()


def test_losses_advantages_and_rewards_do_not_depend_on_padding():
    t = _tiny_trainer(0.1)
    tokens, mask = t.rollout()
    t.update(_batch(t, tokens, mask))  # move the policy away from the reference so that every term is nonzero
    tokens, mask = t.rollout()
    b = _batch(t, tokens, mask)
    extra = 6
    tokens2 = torch.cat([tokens, torch.zeros(32, extra, dtype=torch.long)], 1)
    mask2 = torch.cat([mask, torch.zeros(32, extra)], 1)
    b2 = _batch(t, tokens2, mask2)
    real = mask.bool()
    for k in ("rewards", "advantages", "returns", "old_logp", "old_values"):
        x, x2 = getattr(b, k), getattr(b2, k)
        assert torch.allclose(x[real], x2[:, :mask.shape[1]][real], atol=1e-5), k
        assert (x2[:, mask.shape[1]:] == 0).all(), k
    idx = torch.arange(32)
    loss, st = t.loss(b, idx)
    # padding filled with junk that must never be read
    b3 = replace(b2, **{k: torch.where(mask2.bool(), getattr(b2, k), torch.full_like(getattr(b2, k), 123.0))
                        for k in ("old_logp", "advantages", "returns", "old_values")})
    loss3, st3 = t.loss(b3, idx)
    assert torch.allclose(loss, loss3, atol=1e-6)
    for k in ("policy_loss", "value_loss", "entropy"):
        assert torch.allclose(st[k], st3[k], atol=1e-6), k


def test_adaptive_beta_moves_toward_the_target():
    t = _tiny_trainer(0.5, target_kl=1e-4, kl_horizon=100.0, lr=3e-3)
    betas = [t.step().beta for _ in range(4)]
    assert t.kl_ctl.beta > betas[0]  # observed KL above the tiny target: beta grows


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0.0}, "lr"), ({"lr": -1e-4}, "lr"), ({"beta": -0.1}, "beta"), ({"beta": float("nan")}, "beta"),
    ({"batch_size": 10, "minibatches": 4}, "divisible"), ({"iterations": 0}, "iterations"),
    ({"clip_eps": 1.5}, "clip_eps"), ({"gamma": 1.2}, "gamma"), ({"lam": -0.1}, "lam"),
    ({"temperature": 0.0}, "temperature"), ({"target_kl": -1.0}, "target_kl"),
    ({"target_kl": 2.0, "beta": 0.0}, "beta must be > 0"), ({"whiten_rewards": "yes"}, "whiten_rewards"),
    ({"ppo_epochs": 2.5}, "ppo_epochs"), ({"log_samples": 100}, "log_samples"),
])
def test_bad_ppo_configs_are_rejected_with_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PPOConfig(**kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: SFTConfig(steps=0), "steps"), (lambda: SFTConfig(lr=2.0), "lr"),
    (lambda: SFTConfig(n_embd=30, n_head=4), "divisible"), (lambda: SFTConfig(warmup=10_000), "warmup"),
    (lambda: RewardModelConfig(label_temperature=0.0), "label_temperature"),
    (lambda: RewardModelConfig(pooling="max"), "pooling"), (lambda: RewardModelConfig(n_pairs=-5), "n_pairs"),
])
def test_bad_stage_configs_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_cli_reports_bad_values_and_refuses_a_stage_made_otherwise(pipeline, capsys):
    assert main(["ppo", "--preset", "smoke", "--beta", "-1", "--out", str(pipeline)]) == 2
    assert "beta" in capsys.readouterr().out
    with pytest.raises(ValueError, match="another configuration"):
        ensure_sft(replace(SMOKE.sft, steps=SMOKE.sft.steps + 1), pipeline / "sft", device="cpu", progress=False)
    cfg = json.loads((pipeline / "sft" / "config.json").read_text())
    assert cfg["steps"] == SMOKE.sft.steps


def test_gao_fit_recovers_the_functional_form():
    from rlhf_course.ppo import gao_rl_curve, gao_rl_fit

    kl = np.linspace(0.0, 60.0, 50)
    gain = gao_rl_curve(kl ** 0.5, 0.8, 0.5)
    fit = gao_rl_fit(kl, gain)
    assert fit["a"] == pytest.approx(0.8, abs=1e-9) and fit["b"] == pytest.approx(0.5, abs=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["peak_d"] == pytest.approx(math.exp(0.8 / 0.5 - 1))
    with pytest.raises(ValueError, match="same length"):
        gao_rl_fit([1.0, 2.0], [0.1])


def test_every_preset_is_valid_and_its_model_builds():
    from rlhf_course.world import World

    for name, preset in PRESETS.items():
        gcfg = preset.sft.gpt_config(World(), value_head=True)
        model = GPT(gcfg)
        logits, values = model(torch.zeros(2, 4 + preset.ppo.max_new_tokens, dtype=torch.long))
        assert logits.shape[-1] == gcfg.vocab_size and values.shape == (2, 4 + preset.ppo.max_new_tokens), name
        assert preset.ppo.batch_size % preset.ppo.minibatches == 0


def test_run_folders_ignore_themselves_in_git(tmp_path):
    from rlhf_course.runs import make_run_dir

    make_run_dir(tmp_path / "runs" / "ch06" / "sft")
    assert (tmp_path / "runs" / ".gitignore").read_text().strip().endswith("*")
    assert not (tmp_path / "runs" / "ch06" / ".gitignore").exists()
    (tmp_path / "runs" / "ch06" / "sft" / "model.pt").write_text("x")
    make_run_dir(tmp_path / "runs" / "ch06" / "sft")  # an existing folder is left as it is
    assert sorted(p.name for p in (tmp_path / "runs" / "ch06" / "sft").iterdir()) == ["model.pt"]


def test_minibatches_and_a_separate_value_model():
    """The other code paths of the update: several minibatches per epoch; a value model of its own."""
    t = _tiny_trainer(0.1, minibatches=4, lr=3e-3)
    b = t.step()
    assert math.isfinite(b.stats["value_loss"]) and b.stats["approx_kl"] > 0
    torch.manual_seed(0)
    policy = GPT(replace(t.reference.cfg, value_head=False))
    policy.load_state_dict(t.reference.state_dict())
    value_model = GPT(replace(t.reference.cfg, value_head=True))
    cfg = replace(t.cfg, shared_value=False)
    t2 = PPOTrainer(cfg, policy, t.reference, t.reward_fn, t.prompts, eos_id=3, pad_id=0, value_model=value_model)
    before = value_model.value_head.weight.detach().clone()
    b2 = t2.step()
    assert (b2.old_values == 0).all()  # the value model's zero-initialized head
    assert not torch.equal(before, value_model.value_head.weight)  # and it is trained
    with pytest.raises(ValueError, match="value head"):
        PPOTrainer(cfg, policy, t.reference, t.reward_fn, t.prompts, eos_id=3, pad_id=0)


# -- host-device sync audit: the sync-free paths compute exactly what the checked ones do ----------------


def test_trainer_loss_equals_the_checked_rl_losses_bit_for_bit():
    """`PPOTrainer.loss` (sync-free, used by the update) against rl.clipped_policy_loss / clipped_value_loss."""
    from rlhf_course.gpt import response_logprobs
    from rlhf_course.rl import clipped_policy_loss, clipped_value_loss, masked_mean

    t = _tiny_trainer(0.1, lr=3e-3)
    b = _batch(t, *t.rollout())
    t.update(b)  # the policy has moved since b was scored: ratios, clipping and value errors all nontrivial
    t.policy.train()
    for idx in (torch.arange(32), torch.randperm(32, generator=torch.Generator().manual_seed(1))[:8]):
        loss, st = t.loss(b, idx)
        m = b.mask[idx]
        logp, values, ent = response_logprobs(t.policy, b.tokens[idx], 4, 1.0, with_entropy=True)
        logp, values = (torch.where(m.bool(), x, torch.zeros_like(x)) for x in (logp, values))
        pg, pg_stats = clipped_policy_loss(logp, b.old_logp[idx], b.advantages[idx], m, t.cfg.clip_eps)
        vf, vf_stats = clipped_value_loss(values, b.old_values[idx], b.returns[idx], m, t.cfg.vf_clip_eps)
        assert torch.equal(loss, pg + t.cfg.vf_coef * vf)
        got = {k: v.item() for k, v in st.items()}
        assert got == {"policy_loss": pg.item(), "value_loss": vf.item(), "clipfrac": pg_stats["clipfrac"],
                       "approx_kl": pg_stats["approx_kl"], "vf_clipfrac": vf_stats["vf_clipfrac"],
                       "entropy": masked_mean(ent, m).item()}
    assert pg_stats["approx_kl"] > 0 and pg_stats["clipfrac"] > 0


def test_ppo_losses_equal_rl_functions_on_random_inputs():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from rlhf_course.ppo_trainer import _ppo_losses
    from rlhf_course.rl import clipped_policy_loss, clipped_value_loss

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 9), st.floats(0.05, 0.5),
           st.floats(0.05, 2.0))
    def check(seed, B, T, eps, vf_eps):
        g = torch.Generator().manual_seed(seed)
        x = [torch.randn(B, T, generator=g) for _ in range(6)]
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        m = (torch.arange(T)[None] < lengths[:, None]).float()
        logp, old_logp = x[0] * 0.3 - 2, x[1] * 0.3 - 2
        pg, vf, cf, akl, vcf = _ppo_losses(logp, old_logp, x[2], x[3], x[4], x[5], m, eps, vf_eps)
        pg_r, s_p = clipped_policy_loss(logp, old_logp, x[2], m, eps)
        vf_r, s_v = clipped_value_loss(x[3], x[4], x[5], m, vf_eps)
        assert torch.equal(pg, pg_r) and torch.equal(vf, vf_r)
        assert [cf.item(), akl.item(), vcf.item()] == [s_p["clipfrac"], s_p["approx_kl"], s_v["vf_clipfrac"]]

    check()


def test_distinct_share_equals_a_loop_over_rows():
    from rlhf_course.ppo import _distinct_share

    rng = np.random.default_rng(0)
    resp = rng.integers(0, 7, size=(200, 12))
    lengths = rng.integers(0, 13, size=200).astype(np.float32)  # 0: an empty response (share 0)
    loop = np.array([len(set(r[:int(n)].tolist())) / max(1, int(n)) for r, n in zip(resp, lengths)])
    assert np.array_equal(_distinct_share(resp, lengths), loop)


def test_explained_variance_is_nan_when_returns_do_not_vary():
    from rlhf_course.ppo_trainer import _explained_variance

    m = torch.ones(2, 3)
    assert math.isnan(float(_explained_variance(torch.randn(2, 3), torch.full((2, 3), 0.5), m)))
    r = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    assert float(_explained_variance(r, r, m)) == 1.0
    assert float(_explained_variance(torch.zeros(2, 3), r, m)) == pytest.approx(0.0, abs=1e-7)


def test_precision_override_and_compile_flag():
    from rlhf_course.device import autocast_dtype, precision
    from rlhf_course.runs import grad_scaler

    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None and not grad_scaler(cpu).is_enabled()
    with precision("fp16"):
        assert autocast_dtype(cpu) == torch.float16 and grad_scaler(cpu).is_enabled()
        with precision("fp32"):
            assert autocast_dtype(cpu) is None
        with precision("bf16"):
            assert autocast_dtype(cpu) == torch.bfloat16 and not grad_scaler(cpu).is_enabled()
    assert autocast_dtype(cpu) is None  # restored
    with pytest.raises(ValueError, match="precision"):
        with precision("fp8"):
            pass
    t = _tiny_trainer(0.1)
    with pytest.raises(TypeError, match="compile"):
        PPOTrainer(t.cfg, t.policy, t.reference, t.reward_fn, t.prompts, eos_id=3, pad_id=0, compile="yes")


def test_device_check_cpu_parts_pass():
    """benchmarks/device_check.py --quick: its CPU parts (CPU against CPU exactly, float16 with the grad scaler,
    resume bit for bit, the speed code at reduced sizes) run and pass; its exit status is what CI sees."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"
    spec = importlib.util.spec_from_file_location("device_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    rep = mod.Report()
    assert not rep.check(False, "a failing check is recorded") and rep.failures  # the exit status can be 1


# -- the iteration piece by piece ---------------------------------------------------------------------


def _move_policy(t, scale=0.05, seed=1):
    """Perturb the policy (the same way for the same seed) so that it differs from the reference: every KL
    term nonzero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in t.policy.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _ragged(seed, B=5, T=7):
    g = torch.Generator().manual_seed(seed)
    x = 3.0 + 2.0 * torch.randn(B, T, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    return x, (torch.arange(T)[None] < lengths[:, None]).float()


@pytest.mark.parametrize("seed", range(5))
def test_whiten_without_shift_keeps_the_mean_and_scales_to_unit_variance(seed):
    x, m = _ragged(seed)
    out = whiten(x, m, shift_mean=False)
    assert masked_mean(out, m).item() == pytest.approx(masked_mean(x, m).item(), abs=1e-5)
    assert masked_var(out, m).item() == pytest.approx(1.0, abs=1e-4)
    assert (out[m == 0] == 0).all()
    centred = whiten(x, m)
    assert masked_mean(centred, m).item() == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose((out - centred) * m, masked_mean(x, m) * m, atol=1e-5)  # the shift is the mean


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_of_a_one_token_batch_is_finite(shift_mean):
    """One real token (a batch of one response of one token): no spread to scale by. Whitening leaves it
    centred (0) or, without the shift, at its mean, which is its value."""
    x = torch.tensor([[2.5, 7.0, 7.0]])
    m = torch.tensor([[1.0, 0.0, 0.0]])
    out = whiten(x, m, shift_mean=shift_mean)
    assert torch.isfinite(out).all()
    assert out.tolist() == [[0.0 if shift_mean else 2.5, 0.0, 0.0]]


def test_trainer_whitens_rewards_when_asked_and_keeps_their_mean():
    raw = _tiny_trainer(0.1, whiten_rewards=False)
    white = _tiny_trainer(0.1, whiten_rewards=True)
    for t in (raw, white):
        _move_policy(t)
    tokens, mask = raw.rollout()
    b_raw = raw.rewards(raw.score(tokens, mask))
    b = white.rewards(white.score(tokens, mask))
    expect, _ = kl_penalized_rewards(b.score, b.old_logp, b.ref_logp, mask, b.beta)
    assert torch.equal(b_raw.rewards, expect)  # the flag off: the rewards as they are
    assert torch.equal(b.rewards, whiten(expect, mask, shift_mean=False))
    assert masked_var(b.rewards, mask).item() == pytest.approx(1.0, abs=1e-4)
    assert masked_mean(b.rewards, mask).item() == pytest.approx(masked_mean(expect, mask).item(), abs=1e-5)
    assert torch.equal(b.kl_k1, b_raw.kl_k1)  # the KL statistics read the log-ratio, not the whitened rewards


def test_missing_eos_penalty_lowers_only_the_responses_cut_off():
    t0, t = _tiny_trainer(0.1), _tiny_trainer(0.1, missing_eos_penalty=0.7)
    tokens, mask = t0.rollout()
    s0, s = t0.score(tokens, mask), t.score(tokens, mask)
    assert s.finished.any() and (~s.finished).any()  # both kinds occur in this batch
    assert torch.equal(s0.score, torch.arange(1, 33, dtype=torch.float32))
    assert torch.equal(s.score[s.finished], s0.score[s.finished])
    assert torch.allclose(s.score[~s.finished], s0.score[~s.finished] - 0.7)
    # and it reaches the reward of the last real token
    b0, b = t0.rewards(s0), t.rewards(s)
    assert torch.allclose((b0.rewards - b.rewards).sum(1), 0.7 * (~s.finished).float())


@pytest.mark.parametrize("minibatches", [1, 4])
def test_importance_ratio_is_exactly_one_on_the_first_minibatch_of_the_first_epoch(minibatches):
    """Before any optimizer step the policy is the one that sampled and scored the batch: on the first
    minibatch pi_theta / pi_old is 1 to the last bit, so nothing is clipped and the approximate KL is 0
    (chapter 7's silent bug: old log-probabilities at another temperature break exactly this)."""
    t = _tiny_trainer(0.1, temperature=0.7, ppo_epochs=2, minibatches=minibatches, lr=3e-3)
    _move_policy(t)
    seen = []
    loss_fn = t.loss

    def spy(b, idx):
        loss, stats = loss_fn(b, idx)
        seen.append({k: v.item() for k, v in stats.items()})
        return loss, stats

    t.loss = spy
    t.step()
    assert len(seen) == 2 * minibatches
    assert seen[0]["approx_kl"] == 0.0 and seen[0]["clipfrac"] == 0.0
    assert all(s["approx_kl"] > 0 for s in seen[1:])  # after a step the policy has moved: the check can see it


def _sft_folder(path):
    """A folder as the SFT stage writes it, holding a random tiny model."""
    from rlhf_course.runs import save_atomic

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=2, n_embd=16, banned_tokens=(0, 1)))
    path.mkdir(parents=True)
    save_atomic({"gpt_config": model.cfg.to_dict(), "state_dict": model.state_dict()}, path / "model.pt")
    return model


@pytest.mark.parametrize("value_head", [True, False])
def test_load_policy_returns_the_checkpointed_policy_after_the_folder_moved(tmp_path, value_head):
    from rlhf_course.ppo import write_stages
    from rlhf_course.sft import load_model

    root = tmp_path / "a"
    _sft_folder(root / "sft")
    policy = load_model(root / "sft", value_head=value_head)
    with torch.no_grad():  # a policy that is not the reference's copy, value head included
        for p in policy.parameters():
            p.add_(torch.randn_like(p))
    run = root / "ppo-beta0.1"
    run.mkdir()
    write_stages(run, root / "sft", root / "reward_model")
    torch.save({"policy": policy.state_dict(), "step": 3}, run / "checkpoint.pt")
    shutil.move(root, tmp_path / "b")  # stages.json is relative: the pipeline folder moves as a whole
    loaded = load_policy(tmp_path / "b" / "ppo-beta0.1")
    assert (loaded.value_head is not None) == value_head and not loaded.training
    want = policy.state_dict()
    assert loaded.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())
