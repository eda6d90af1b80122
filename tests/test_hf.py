"""The bridge to Transformers and TRL: exact export, and the course's losses against TRL's own code.

Nothing is downloaded: every model here is built by the course's code and written to a temporary folder.
TRL's side is always computed by TRL (its trainers' ``compute_loss`` on inputs its own
``_generate_and_score_completions`` / data collator prepared), never re-implemented here.

One setting matters for every parity check: TRL's configs default to ``bf16=True``, and accelerate then
wraps the model's forward in bfloat16 autocast, on the CPU too. The course computes in float32, so the
parity runs set ``bf16=False``; with the default, log-probabilities differ by a few 1e-2.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rlhf_course import hf, rl  # noqa: E402
from rlhf_course.cli import main as cli_main  # noqa: E402
from rlhf_course.dpo import dpo_loss  # noqa: E402
from rlhf_course.gpt import GPT, GPTConfig, response_logprobs  # noqa: E402
from rlhf_course.reward_model import RewardModel  # noqa: E402
from rlhf_course.runs import save_atomic  # noqa: E402
from rlhf_course.sft import model_config  # noqa: E402
from rlhf_course.world import ADJECTIVES, World  # noqa: E402

torch.set_num_threads(1)
WORLD = World()
TOK = WORLD.tokenizer


def random_gpt(cfg: GPTConfig, seed: int, scale: float = 0.3) -> GPT:
    """A GPT with weights far from the initialization (so every layer matters to the logits)."""
    torch.manual_seed(seed)
    g = GPT(cfg)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(scale * torch.randn_like(p))
    return g.eval()


# ----------------------------------------------------------------------------------------------------
# export


@settings(max_examples=6, deadline=None)
@given(n_layer=st.integers(1, 3), n_head=st.sampled_from([1, 2, 4]), head_dim=st.sampled_from([4, 8]),
       value_head=st.booleans(), seed=st.integers(0, 10_000))
def test_to_transformers_logits_equal(n_layer, n_head, head_dim, value_head, seed):
    cfg = model_config(WORLD, n_layer, n_head, n_head * head_dim, block_size=24, value_head=value_head)
    g = random_gpt(cfg, seed)
    m = hf.to_transformers(g)
    x = torch.randint(0, cfg.vocab_size, (3, 24), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours, values = g(x)
        theirs = m(x).logits
        raw = g.lm_head(g.hidden(x))  # the unmasked head, computed by the course's own layers
    allowed = ~g.banned
    torch.testing.assert_close(theirs[..., allowed], ours[..., allowed], atol=1e-5, rtol=0)
    # on banned tokens GPT-2 gives the plain head product (the course masks them to -1e9): by design
    torch.testing.assert_close(theirs, raw, atol=1e-5, rtol=0)
    assert bool((ours[..., ~allowed] == -1e9).all())
    # the inverse restores the course's GPT exactly, banned tokens and value head included
    back = hf.from_transformers(m, hf.to_transformers_value(g) if value_head else None)
    assert back.cfg == g.cfg
    for k, v in g.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    if value_head:
        with torch.no_grad():
            v_hf = hf.to_transformers_value(g)(x).logits[..., 0]
        torch.testing.assert_close(v_hf, values, atol=1e-5, rtol=0)


def test_banned_mass_is_the_log_prob_shift():
    # log p_hf(v) = log p_course(v) + log(1 - m): TRL's log-probs of an exported course model, by design
    g = random_gpt(model_config(WORLD, 1, 2, 16, block_size=16), seed=3)
    x = torch.as_tensor(WORLD.sample(4, seed=0)[0][:, :12])
    with torch.no_grad():
        ours = torch.log_softmax(g(x)[0], -1)
        theirs = torch.log_softmax(hf.to_transformers(g)(x).logits, -1)
    m = hf.banned_mass(g, x)
    allowed = ~g.banned
    torch.testing.assert_close(theirs[..., allowed], ours[..., allowed] + torch.log1p(-m)[..., None],
                               atol=1e-5, rtol=0)
    assert float(m.min()) > 0
    no_ban = random_gpt(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=3)
    assert float(hf.banned_mass(no_ban, x).abs().max()) == 0.0


@pytest.mark.parametrize("pooling", ["last", "mean", "sum"])
def test_reward_model_score_equals_course(pooling):
    cfg = model_config(WORLD, 1, 2, 16, block_size=24)
    torch.manual_seed(5)
    rm = RewardModel(cfg, pooling)
    with torch.no_grad():
        for p in rm.parameters():
            p.add_(0.3 * torch.randn_like(p))
        rm.gain.fill_(1.7)
        rm.bias.fill_(-0.4)
    rm.eval()
    reviews = WORLD.sample(6, seed=1)[0][:, :24]
    tokens = torch.as_tensor(reviews)
    P = 4
    attention = (tokens != TOK.pad_id).long()
    mask = attention[:, P:].float()
    with torch.no_grad():
        ours = rm(tokens, mask, P)
        model = hf.to_transformers_reward(rm, prompt_len=P)
        by_mask = model(tokens, response_mask=mask).logits[:, 0]
        by_attention = model(tokens, attention_mask=attention).logits[:, 0]
        back = hf.from_transformers_reward(model)(tokens, mask, P)
    torch.testing.assert_close(by_mask, ours, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_attention, ours, atol=1e-5, rtol=0)
    torch.testing.assert_close(back, ours, atol=0, rtol=0)


def test_tokenizer_same_ids_pad_eos():
    fast = hf.to_transformers_tokenizer()
    assert (fast.pad_token_id, fast.bos_token_id, fast.eos_token_id) == (TOK.pad_id, TOK.bos_id, TOK.eos_id)
    assert len(fast) == len(TOK)
    for row in WORLD.sample(20, seed=2)[0]:
        text = TOK.decode(row)  # words, ending with "<eos>"
        words = text.removesuffix(" <eos>")
        assert fast(words)["input_ids"] == TOK.encode(words)
        assert fast(text, add_special_tokens=False)["input_ids"] == TOK.encode(text, bos=False)
        assert fast.decode(TOK.encode(words), skip_special_tokens=True) == words
    batch = fast(["the food was", "the food was very good"], padding=True)
    assert batch["input_ids"][0][-1] == TOK.pad_id and batch["attention_mask"][0][-1] == 0
    with pytest.raises(Exception):  # a word outside the language, as the course's tokenizer refuses it
        fast("the food was scrumptious")


def test_bad_input_raises():
    with pytest.raises(TypeError, match="GPT"):
        hf.to_transformers(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        hf.from_transformers(GPT(GPTConfig(vocab_size=64, n_embd=16, n_head=2)))
    with pytest.raises(ValueError, match="vocab_size"):
        hf.gpt2_config(GPTConfig(vocab_size=16, n_embd=16, n_head=2))
    with pytest.raises(ValueError, match="value head"):
        hf.to_transformers_value(GPT(GPTConfig(vocab_size=64, n_embd=16, n_head=2)))
    with pytest.raises(ValueError, match="prompt_len"):
        hf.to_transformers_reward(RewardModel(GPTConfig(vocab_size=64, n_embd=16, n_head=2)), prompt_len=0)


def test_export_cli_loads_offline(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    cfg = model_config(WORLD, 1, 2, 16, block_size=32)
    g = random_gpt(cfg, seed=7)
    sft = tmp_path / "run" / "sft"
    sft.mkdir(parents=True)
    save_atomic({"gpt_config": cfg.to_dict(), "state_dict": g.state_dict()}, sft / "model.pt")
    assert cli_main(["export", str(sft), "--out", str(tmp_path / "hf")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert (tok.pad_token_id, tok.eos_token_id) == (TOK.pad_id, TOK.eos_id)
    ids = tok(["the food was", "the pizza is"], return_tensors="pt")["input_ids"]
    assert ids.tolist() == [TOK.encode("the food was"), TOK.encode("the pizza is")]
    with torch.no_grad():
        allowed = ~g.banned
        torch.testing.assert_close(model(ids).logits[..., allowed], g(ids)[0][..., allowed], atol=1e-5, rtol=0)
        torch.manual_seed(0)
        out = model.generate(ids.repeat(16, 1), max_new_tokens=12, do_sample=True)
    # suppress_tokens keeps the banned tokens out of sampling (padding after <eos> is filled in, not sampled)
    for row in out[:, ids.shape[1]:].tolist():
        body = row[:row.index(TOK.eos_id) + 1] if TOK.eos_id in row else row
        assert not set(body) & set(cfg.banned_tokens), row

    rm = RewardModel(cfg, "sum")
    rm_dir = tmp_path / "run" / "reward_model"
    rm_dir.mkdir()
    save_atomic({"gpt_config": cfg.to_dict(), "pooling": "sum", "state_dict": rm.state_dict()}, rm_dir / "model.pt")
    assert cli_main(["export", str(rm_dir), "--out", str(tmp_path / "hf_rm")]) == 0
    scorer = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf_rm", local_files_only=True)
    assert isinstance(scorer, hf.GPT2RewardModel)
    x = torch.as_tensor(WORLD.sample(3, seed=3)[0][:, :32])
    with torch.no_grad():
        torch.testing.assert_close(scorer(x, attention_mask=(x != 0).long()).logits[:, 0],
                                   rm(x, (x[:, 4:] != 0).float(), 4), atol=1e-5, rtol=0)
    assert cli_main(["export", str(tmp_path / "nothing_here"), "--out", str(tmp_path / "x")]) == 2
    assert "error" in capsys.readouterr().out


def test_export_of_a_ppo_run_writes_policy_and_value_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    cfg = model_config(WORLD, 1, 2, 16, block_size=32)
    sft = tmp_path / "pipeline" / "sft"
    sft.mkdir(parents=True)
    save_atomic({"gpt_config": cfg.to_dict(), "state_dict": random_gpt(cfg, seed=8).state_dict()},
                sft / "model.pt")
    # a PPO run with the value head on the policy's trunk: checkpoint.pt and stages.json
    policy = random_gpt(model_config(WORLD, 1, 2, 16, block_size=32, value_head=True), seed=9)
    run = tmp_path / "pipeline" / "ppo-beta0.3"
    run.mkdir()
    save_atomic({"policy": policy.state_dict(), "value_model": None}, run / "checkpoint.pt")
    (run / "stages.json").write_text('{"sft": "../sft", "reward_model": "../reward_model"}')
    assert cli_main(["export", str(run), "--out", str(tmp_path / "hf")]) == 0
    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    vm = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf" / "value_model",
                                                         local_files_only=True).eval()
    x = torch.as_tensor(WORLD.sample(3, seed=5)[0][:, :20])
    with torch.no_grad():
        logits, values = policy(x)
        allowed = ~policy.banned
        torch.testing.assert_close(lm(x).logits[..., allowed], logits[..., allowed], atol=1e-5, rtol=0)
        torch.testing.assert_close(vm(x).logits[..., 0], values, atol=1e-5, rtol=0)
    back = hf.from_transformers(lm, vm)
    for k, v in policy.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_core_does_not_import_transformers():
    code = ("import sys, rlhf_course, rlhf_course.gpt, rlhf_course.ppo, rlhf_course.dpo, rlhf_course.rl, "
            "rlhf_course.cli; bad = [m for m in ('transformers', 'trl', 'datasets', 'accelerate') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ----------------------------------------------------------------------------------------------------
# parity with TRL

PARITY_CFG = GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=32)  # no banned tokens:
# the exported model's log-probabilities then equal the course's exactly (see test_banned_mass_...)


def _policy_and_reference():
    pol = random_gpt(PARITY_CFG, seed=0)
    ref = random_gpt(PARITY_CFG, seed=0)
    with torch.no_grad():
        for p in ref.parameters():  # the reference: near the policy, not equal (the KL is not 0)
            p.add_(0.05 * torch.randn_like(p))
        # make <eos> likely, so that responses have different lengths (the aggregations then differ):
        # shifting ln_f's bias along w_eos raises the <eos> logit by 2.5
        w = pol.wte.weight[TOK.eos_id]
        pol.ln_f.bias.add_(2.5 * w / w.square().sum())
    return pol, ref


VALENCE = {TOK.index[w]: v for w, v in ADJECTIVES.items()}


def valence_reward(prompts, completions, completion_ids, **kwargs):
    """A reward TRL calls as it calls any reward function: adjectives' valence plus 0.1 per token."""
    return [sum(VALENCE.get(int(t), 0) for t in c) + 0.1 * len(c) for c in completion_ids]


@pytest.fixture(scope="module")
def grpo_batch(tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    pol, ref = _policy_and_reference()
    folder = tmp_path_factory.mktemp("grpo")
    hf.to_transformers(pol).save_pretrained(folder / "policy")
    G, T, max_len = 4, 0.9, 8
    args = GRPOConfig(output_dir=str(folder / "out"), per_device_train_batch_size=8, num_generations=G,
                      max_completion_length=max_len, beta=0.1, epsilon=0.2, temperature=T, use_cpu=True,
                      bf16=False, report_to=[], max_steps=1, seed=0)
    prompts = ["the food was", "the pizza is"]
    trainer = GRPOTrainer(model=str(folder / "policy"), reward_funcs=valence_reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts}),
                          processing_class=hf.to_transformers_tokenizer())
    # TRL builds its reference from the policy's folder; give it the course's reference weights
    trainer.ref_model.load_state_dict(hf.to_transformers(ref).state_dict())
    # set by Trainer's training loop for each accumulation window; here one window of one micro-batch
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    torch.manual_seed(0)
    inputs = trainer._generate_and_score_completions([{"prompt": p} for p in prompts for _ in range(G)])
    return dict(trainer=trainer, inputs=inputs, pol=pol, ref=ref, G=G, T=T, max_len=max_len, prompts=prompts)


def test_grpo_advantages_equal_group_advantages(grpo_batch):
    b = grpo_batch
    inputs, G = b["inputs"], b["G"]
    completions = [c[m.bool()].tolist() for c, m in zip(inputs["completion_ids"], inputs["completion_mask"])]
    assert len({len(c) for c in completions}) > 1, "responses of one length would not test the aggregations"
    rewards = torch.tensor(valence_reward(None, None, completions), dtype=torch.float32)
    # TRL: (r - mean) / (std + 1e-4), std unbiased, per group (scale_rewards="group")
    ours = rl.group_advantages(rewards, G, center="mean", scale="std", eps=1e-4)
    assert float(ours.abs().max()) > 0.1
    torch.testing.assert_close(inputs["advantages"], ours, atol=1e-6, rtol=0)
    # by design: the course's default eps is 1e-6, TRL's is 1e-4 (a difference well above the tolerance)
    course_default = rl.group_advantages(rewards, G, center="mean", scale="std")
    assert float((course_default - inputs["advantages"]).abs().max()) > 1e-5


def test_trl_default_bf16_is_why_parity_sets_it_off(grpo_batch, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    b = grpo_batch
    tokens = torch.cat([b["inputs"]["prompt_ids"], b["inputs"]["completion_ids"]], dim=1)
    with torch.no_grad():
        ours = b["pol"](tokens)[0]
        exact = b["trainer"].model(input_ids=tokens).logits  # bf16=False: float32 as the course
        args = GRPOConfig(output_dir=str(tmp_path), num_generations=b["G"], per_device_train_batch_size=8,
                          max_completion_length=b["max_len"], beta=0.1, use_cpu=True, report_to=[])
        assert args.bf16  # TRL's default
        default = GRPOTrainer(model=b["trainer"].model.name_or_path, reward_funcs=valence_reward, args=args,
                              train_dataset=Dataset.from_dict({"prompt": b["prompts"]}),
                              processing_class=hf.to_transformers_tokenizer())
        # the reference is prepared by accelerate at once (the policy when training starts): its forward
        # runs under bfloat16 autocast; TRL built it from the policy's folder, so its weights are pol's
        under_bf16 = default.ref_model(input_ids=tokens).logits
    torch.testing.assert_close(exact, ours, atol=1e-5, rtol=0)
    assert float((under_bf16 - ours).abs().max()) > 1e-3


def _course_logps(b):
    inputs = b["inputs"]
    tokens = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    P = inputs["prompt_ids"].shape[1]
    logp, _, _ = response_logprobs(b["pol"], tokens, P, temperature=b["T"])
    with torch.no_grad():
        ref_logp, _, _ = response_logprobs(b["ref"], tokens, P, temperature=b["T"])
    return logp, ref_logp, inputs["completion_mask"].float()


def test_grpo_reference_logps_equal(grpo_batch):
    _, ref_logp, mask = _course_logps(grpo_batch)
    theirs = grpo_batch["inputs"]["ref_per_token_logps"]
    torch.testing.assert_close(theirs * mask, ref_logp * mask, atol=1e-5, rtol=0)


# TRL loss type -> the course's aggregation (rl.aggregate_loss). TRL's other types have no course counterpart:
# "luspo" needs sequence-level ratios (GSPO), "cispo"/"sapo"/"vespo" change the surrogate itself.
LOSS_TYPES = [("grpo", "seq-mean-token-mean"), ("bnpo", "token-mean"), ("dapo", "token-mean"),
              ("dr_grpo", "seq-mean-token-sum-norm")]


@pytest.mark.parametrize("loss_type,loss_agg", LOSS_TYPES)
@pytest.mark.parametrize("bias_correction", [False, True])
def test_grpo_loss_equals_course(grpo_batch, loss_type, loss_agg, bias_correction):
    from rlhf_course.grpo import grpo_loss

    b = grpo_batch
    trainer, inputs = b["trainer"], dict(b["inputs"])
    logp, ref_logp, mask = _course_logps(b)
    # off-policy old log-probs (as after a first minibatch step), so that ratios differ from 1 and some clip
    old = (logp + 0.3 * torch.randn(logp.shape, generator=torch.Generator().manual_seed(1))).detach()
    inputs["old_per_token_logps"] = old
    trainer.loss_type = loss_type
    trainer.args.use_bias_correction_kl = bias_correction  # TRL's KL times the ratio: the course's "k3-ratio"
    trainer.model.zero_grad()
    theirs = trainer.compute_loss(trainer.model, inputs)
    kl = "k3-ratio" if bias_correction else "k3"
    ours, stats = grpo_loss(logp, old, ref_logp, inputs["advantages"], mask, clip_eps=0.2, beta=0.1, kl=kl,
                            loss_agg=loss_agg, max_len=b["max_len"])
    torch.testing.assert_close(theirs.detach(), ours.detach(), atol=1e-6, rtol=0)
    logged = trainer._metrics["train"]
    assert 0 < logged["clip_ratio/region_mean"][-1] < 1
    assert logged["clip_ratio/region_mean"][-1] == pytest.approx(float(stats["clip_ratio"]), abs=1e-6)
    # TRL logs the mean over real tokens of the KL term it adds (k3, times the ratio with bias correction)
    course_kl = rl.masked_mean(rl.kl_loss_terms(logp.detach(), ref_logp, kl, old_logp=old), mask)
    assert logged["kl"][-1] == pytest.approx(float(course_kl), abs=1e-6)
    assert float(course_kl) > 1e-3
    if not bias_correction:
        assert logged["kl"][-1] == pytest.approx(float(stats["kl_token_k3"]), abs=1e-6)
    # same gradients: TRL's through the exported model, the course's through the GPT (wte is tied to the head)
    theirs.backward()
    b["pol"].zero_grad()
    ours.backward()
    torch.testing.assert_close(trainer.model.transformer.wte.weight.grad, b["pol"].wte.weight.grad,
                               atol=1e-6, rtol=1e-4)


def test_dpo_loss_equals_course(tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    pol, ref = _policy_and_reference()
    hf.to_transformers(pol).save_pretrained(tmp_path / "policy")
    reviews = [TOK.decode(r) for r in WORLD.sample(12, seed=4)[0]]  # "the NOUN was ... <eos>"
    prompts = [" ".join(r.split()[:3]) for r in reviews[:6]]
    chosen = [" " + " ".join(r.split()[3:]) for r in reviews[:6]]
    rejected = [" " + " ".join(r.split()[3:]) for r in reviews[6:]]
    data = Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected})
    beta = 0.2
    args = DPOConfig(output_dir=str(tmp_path / "out"), beta=beta, per_device_train_batch_size=6, use_cpu=True,
                     bf16=False, report_to=[], max_steps=1, loss_type=["sigmoid"], seed=0)
    trainer = DPOTrainer(model=str(tmp_path / "policy"), ref_model=hf.to_transformers(ref), args=args,
                         train_dataset=data, processing_class=hf.to_transformers_tokenizer())
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    trainer.model.train()
    theirs = trainer.compute_loss(trainer.model, batch)

    def logps(model, completions):
        out = []
        for p, c in zip(prompts, completions):
            x = torch.tensor(TOK.encode(p + c))[None]
            P = len(TOK.encode(p))
            lp, _, _ = response_logprobs(model, x, P)
            out.append(lp.sum())
        return torch.stack(out)

    with torch.no_grad():
        ref_c, ref_r = logps(ref, chosen), logps(ref, rejected)
    ours, stats = dpo_loss(logps(pol, chosen), logps(pol, rejected), ref_c, ref_r, beta)
    torch.testing.assert_close(theirs.detach(), ours.detach(), atol=1e-6, rtol=0)
    assert trainer._metrics["train"]["rewards/accuracies"][-1] == pytest.approx(stats["accuracy"], abs=1e-6)
    assert trainer._metrics["train"]["rewards/margins"][-1] == pytest.approx(stats["margin"], abs=1e-5)
