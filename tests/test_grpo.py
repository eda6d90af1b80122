"""The critic-free trainer (rlhf_course.grpo): the loss against loops, the smoke pipeline end to end,
exact resume, on-policy ratio, group structure, configs and the command line."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from rlhf_course import grpo
from rlhf_course.cli import main
from rlhf_course.gpt import GPT, GPTConfig
from rlhf_course.grpo import GRPO_PRESETS, GRPOConfig, GRPOTrainer, grpo_loss, train_grpo
from rlhf_course.loop import RunInterrupted
from rlhf_course.ppo import load_policy
from rlhf_course.runs import read_json, read_jsonl

SMOKE = GRPO_PRESETS["smoke"].grpo
TRL_NAMES = {"reward", "reward_std", "frac_reward_zero_std", "completions/mean_length",
             "completions/clipped_ratio", "clip_ratio/region_mean", "entropy"}
COURSE_NAMES = {"proxy", "gold", "kl", "length", "fluency", "distinct", "samples", "beta", "kl_token_k3"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """`rlhf-course grpo --preset smoke` on an empty folder: runs the reference and reward-model stages first."""
    out = tmp_path_factory.mktemp("ch09") / "run"
    assert main(["grpo", "--preset", "smoke", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_smoke_pipeline_end_to_end(pipeline):
    run = pipeline / grpo.grpo_run_name(SMOKE)
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "stages.json"):
        assert (run / f).is_file(), f
    recs = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(SMOKE.iterations))
    assert all((TRL_NAMES | COURSE_NAMES) <= r.keys() for r in recs)
    assert all(math.isfinite(r["kl"]) and math.isfinite(r["loss"]) for r in recs)
    assert recs[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the policy starts as the reference
    assert recs[0]["episodes"] == SMOKE.n_prompts * SMOKE.group_size
    assert 0.0 <= recs[-1]["frac_reward_zero_std"] <= 1.0
    assert recs[-1]["kl"] > 0.01  # the policy moved
    summary = read_json(run / "summary.json")
    assert summary["episodes"] == SMOKE.iterations * SMOKE.batch_size
    policy = load_policy(run)  # a GRPO policy has no value head, and loads as a PPO one does
    assert policy.value_head is None


def _strip_times(recs):
    return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "seconds"} for r in recs]


@pytest.mark.parametrize("over", [{}, {"kl": "reward", "center": "loo", "scale": "none", "ppo_epochs": 2}])
def test_a_killed_run_resumes_as_if_never_stopped(pipeline, tmp_path, over):
    cfg = replace(SMOKE, iterations=5, checkpoint_every=2, **over)
    sft, rm = pipeline / "sft", pipeline / "reward_model"
    whole = train_grpo(cfg, tmp_path / "whole", sft, rm, device="cpu", progress=False)
    with pytest.raises(RunInterrupted):  # killed after step 2: the last checkpoint is from step 1
        train_grpo(cfg, tmp_path / "cut", sft, rm, device="cpu", progress=False, stop_after=3)
    with pytest.raises(ValueError, match="already holds a GRPO run"):
        train_grpo(cfg, tmp_path / "cut", sft, rm, device="cpu", progress=False)
    cut = train_grpo(cfg, tmp_path / "cut", sft, rm, device="cpu", progress=False, resume=True)
    a, b = read_jsonl(whole / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(5))
    assert _strip_times(a) == _strip_times(b)  # bit for bit on the CPU
    ta = torch.load(whole / "checkpoint.pt", weights_only=False)
    tb = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(ta["policy"][k], tb["policy"][k]) for k in ta["policy"])


# --- the loss, against loops written from the formula -----------------------------------------------

def _loop_loss(logp, old, ref, adv, mask, clip_eps, beta, kl, agg, max_len):
    """The same loss, one token at a time."""
    B, T = len(logp), len(logp[0])
    per_seq, tokens = [], []
    for i in range(B):
        row = []
        for t in range(T):
            if not mask[i][t]:
                continue
            rho = math.exp(logp[i][t] - old[i][t])
            a = adv[i]
            pg = -min(rho * a, min(max(rho, 1 - clip_eps), 1 + clip_eps) * a)
            u = logp[i][t] - ref[i][t]
            term = {"reward": 0.0, "k1": u, "k2": u * u / 2, "k3": math.exp(-u) - 1 + u,
                    "k3-ratio": rho * (math.exp(-u) - 1 + u)}[kl]
            row.append(pg + beta * term)
        tokens += row
        per_seq.append(row)
    if agg == "token-mean":
        return sum(tokens) / len(tokens)
    if agg == "seq-mean-token-mean":
        return sum(sum(r) / len(r) for r in per_seq) / B
    return sum(sum(r) / max_len for r in per_seq) / B


@pytest.mark.parametrize("kl", grpo.KL_PLACEMENTS)
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_grpo_loss_equals_a_loop_over_tokens(kl, agg):
    g = torch.Generator().manual_seed(3)
    B, T = 6, 5
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    # some ratios outside the clip range; every log-probability <= 0
    old = (logp + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=0)
    ref = (logp + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)).clamp(max=0)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    loss, stats = grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.3, kl=kl, loss_agg=agg, max_len=8)
    want = _loop_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.bool().tolist(),
                      0.2, 0.3, kl, agg, 8)
    assert float(loss) == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert 0.0 < float(stats["clip_ratio"]) < 1.0


def test_on_policy_gradient_is_the_policy_gradient_plus_the_kl_term():
    """With old = logp.detach() the ratio is 1 and d loss / d logp_t = (-A + beta d kl_t) / n_tokens (token-mean)."""
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(3, 4, generator=g, dtype=torch.float64)).requires_grad_()
    ref = -torch.rand(3, 4, generator=g, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    mask = torch.ones(3, 4)
    loss, _ = grpo_loss(logp, logp.detach(), ref, adv, mask, clip_eps=0.2, beta=0.5, kl="k2",
                        loss_agg="token-mean")
    loss.backward()
    u = (logp - ref).detach()
    want = (-adv[:, None] + 0.5 * u) / 12
    assert torch.allclose(logp.grad, want, atol=1e-14)


def test_kl_in_the_loss_needs_the_reference_and_bad_arguments_are_rejected():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="ref_logp is needed"):
        grpo_loss(x, x, None, torch.zeros(2), torch.ones(2, 3), clip_eps=0.2, beta=0.1, kl="k3",
                  loss_agg="token-mean")
    with pytest.raises(ValueError, match="kl must be one of"):
        grpo_loss(x, x, x, torch.zeros(2), torch.ones(2, 3), clip_eps=0.2, beta=0.1, kl="k4",
                  loss_agg="token-mean")
    with pytest.raises(ValueError, match="advantages must be"):
        grpo_loss(x, x, x, torch.zeros(3), torch.ones(2, 3), clip_eps=0.2, beta=0.1, kl="k3",
                  loss_agg="token-mean")
    loss, _ = grpo_loss(x, x, None, torch.zeros(2), torch.ones(2, 3), clip_eps=0.2, beta=0.1, kl="reward",
                        loss_agg="token-mean")
    assert float(loss) == 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"group_size": 1}, "group_size must be >= 2"),
    ({"group_size": 0}, "positive integer"),
    ({"n_prompts": 3, "group_size": 3, "minibatches": 2}, "divisible by minibatches"),
    ({"kl": "k4"}, "kl must be one of"),
    ({"scale": "mad"}, "scale must be one of"),
    ({"loss_agg": "sum"}, "loss_agg must be one of"),
    ({"beta": -0.1}, "beta must be"),
    ({"beta": float("nan")}, "beta must be"),
    ({"lr": 0.0}, "lr must be"),
    ({"clip_eps": 1.5}, "clip_eps must be"),
    ({"log_samples": 999}, "log_samples"),
])
def test_bad_configs_are_rejected_with_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRPOConfig(**kwargs)


def test_every_preset_is_valid():
    for name, preset in GRPO_PRESETS.items():
        assert preset.grpo.batch_size == preset.grpo.n_prompts * preset.grpo.group_size, name


def _tiny_trainer(sign=1.0, **kw):
    torch.manual_seed(0)
    gcfg = GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=2, n_embd=16, banned_tokens=(0, 1))
    reference = GPT(gcfg)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0, 0.5)
    policy = GPT(gcfg)
    policy.load_state_dict(reference.state_dict())
    cfg = replace(GRPOConfig(), n_prompts=4, group_size=4, max_new_tokens=8, **kw)
    scores = lambda tokens, mask, P: sign * mask.sum(1).float()  # noqa: E731  (longer is better)
    prompts = torch.randint(3, 16, (8, 4), generator=torch.Generator().manual_seed(0))
    return GRPOTrainer(cfg, policy, reference, scores, prompts, eos_id=3, pad_id=0)


def test_groups_share_their_prompt_and_advantages_are_per_group():
    tr = _tiny_trainer()
    tokens, mask = tr.rollout()
    P = tr.prompts.shape[1]
    groups = tokens[:, :P].reshape(4, 4, P)
    assert torch.equal(groups, groups[:, :1].expand_as(groups))
    b = tr.score(tokens, mask)
    sums = b["advantages"].reshape(4, 4).sum(1)
    assert torch.allclose(sums, torch.zeros(4), atol=1e-5)  # centred within each group


def test_off_policy_first_minibatch_has_ratio_exactly_one():
    """The scoring pass and the update's first forward pass see the same weights: the ratio is exactly 1."""
    tr = _tiny_trainer(ppo_epochs=2, kl="k3-ratio")
    tokens, mask = tr.rollout()
    b = tr.score(tokens, mask)
    tr.policy.train()
    from rlhf_course.gpt import response_logprobs
    logp, _, _ = response_logprobs(tr.policy, tokens, tr.prompts.shape[1], 1.0)
    logp = torch.where(mask.bool(), logp, torch.zeros_like(logp))
    assert torch.equal(logp, b["old_logp"])


def test_kl_in_the_reward_lowers_the_reward_by_beta_times_the_sequence_log_ratio():
    tr = _tiny_trainer(kl="reward", beta=0.5)
    with torch.no_grad():  # move the policy away from the reference
        for p in tr.policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    tokens, mask = tr.rollout()
    b = tr.score(tokens, mask)
    seq = ((b["old_logp"] - b["ref_logp"]) * mask).sum(1)
    assert torch.allclose(b["reward"], b["score"] - 0.5 * seq, atol=1e-6)
    assert not torch.allclose(b["reward"], b["score"])


def test_cli_reports_bad_values(tmp_path, capsys):
    assert main(["grpo", "--preset", "smoke", "--group-size", "1", "--out", str(tmp_path / "x"),
                 "--device", "cpu"]) == 2
    assert "group_size must be >= 2" in capsys.readouterr().out


def test_training_raises_the_reward_on_the_tiny_problem():
    """Reward = minus the response length: a few on-policy GRPO steps make responses shorter."""
    tr = _tiny_trainer(sign=-1.0, lr=1e-2, beta=0.0)
    lengths = [float(tr.step()["mask"].sum(1).float().mean()) for _ in range(25)]
    assert np.mean(lengths[-5:]) < np.mean(lengths[:5]) - 1.0, lengths


def test_best_of_n_on_the_smoke_models(pipeline):
    """best_of_n.lm_best_of_n: n = 1 is the reference's mean; gains start at 0; a standard error per n."""
    from rlhf_course.best_of_n import lm_best_of_n
    from rlhf_course.reward_model import load_reward_model
    from rlhf_course.sft import load_model
    from rlhf_course.world import World

    ref, rm = load_model(pipeline / "sft"), load_reward_model(pipeline / "reward_model")
    out = lm_best_of_n(ref, rm, World(), n_prompts=3, N=4, seed=1, max_new_tokens=8)
    assert list(out["n"]) == [1, 2, 3, 4] and out["gold_per_prompt"].shape == (3, 4)
    assert out["gold_gain"][0] == 0.0 and out["proxy_gain"][0] == 0.0
    assert np.all(np.diff(out["proxy"]) >= -1e-12)  # keeping the best proxy score can only raise it
    np.testing.assert_allclose(out["gold"], out["gold_per_prompt"].mean(0))
    assert out["gold_gain_se"][0] == 0.0 and np.all(np.isfinite(out["gold_gain_se"]))
