"""The tiny GPT of chapter 6: KV-cache sampling, temperature, value head, causality, configuration."""
import math

import pytest
import torch

from rlhf_course.gpt import GPT, GPTConfig, count_parameters, entropy_from_logits, generate, response_logprobs

CFG = GPTConfig(vocab_size=16, block_size=24, n_layer=2, n_head=2, n_embd=32, value_head=True, banned_tokens=(0, 1))


def _model(seed=0, cfg=CFG):
    torch.manual_seed(seed)
    m = GPT(cfg)
    with torch.no_grad():  # a model with opinions: larger weights than the initialization's
        for name, p in m.named_parameters():
            if "value_head" not in name:
                p.normal_(0, 0.3)
    return m.eval()


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_kv_cache_sampling_log_probs_equal_a_full_recomputation(temperature):
    m = _model()
    prompts = torch.randint(2, 16, (32, 3), generator=torch.Generator().manual_seed(1))
    tokens, mask, logp = generate(m, prompts, 12, eos_id=2, pad_id=0, temperature=temperature,
                                  generator=torch.Generator().manual_seed(2))
    full, _, _ = response_logprobs(m, tokens, 3, temperature)
    assert torch.allclose(logp, full * mask, atol=1e-5)
    # the mask covers each response up to and including its first <eos>; padding after it
    resp = tokens[:, 3:]
    for row, mrow in zip(resp, mask):
        n = int(mrow.sum())
        assert (row[n:] == 0).all() and (row[:n] != 0).all()
        if n < 12:
            assert row[n - 1] == 2 and (row[:n - 1] != 2).all()


def test_sampling_follows_softmax_of_logits_over_temperature():
    """First sampled token: empirical frequencies match softmax(logits / T) (the T the log-probs use)."""
    m = _model(3)
    T, n = 0.8, 6000
    prompt = torch.tensor([[5, 7, 9]])
    tokens, _, logp = generate(m, prompt.repeat(n, 1), 1, eos_id=2, pad_id=0, temperature=T,
                               generator=torch.Generator().manual_seed(0))
    logits, _ = m(prompt)
    p = torch.softmax(logits[0, -1] / T, -1)
    freq = torch.bincount(tokens[:, 3], minlength=16).double() / n
    sigma = torch.sqrt(p * (1 - p) / n).double()
    assert ((freq - p.double()).abs() <= 5 * sigma + 1e-3).all()
    assert torch.allclose(logp[:, 0], torch.log(p)[tokens[:, 3]], atol=1e-5)
    assert freq[0] == 0 and freq[1] == 0  # banned tokens (pad, bos) are never sampled


def test_value_head_starts_at_zero_and_logits_are_float32():
    torch.manual_seed(0)
    m = GPT(CFG)
    logits, values = m(torch.randint(2, 16, (4, 10)))
    assert logits.dtype == torch.float32 and values.shape == (4, 10)
    assert (values == 0).all()
    assert GPT(GPTConfig(**{**CFG.to_dict(), "value_head": False, "banned_tokens": ()}))(
        torch.zeros(1, 3, dtype=torch.long))[1] is None


def test_future_tokens_and_padding_do_not_change_earlier_positions():
    m = _model(4)
    x = torch.randint(2, 16, (3, 12))
    y = x.clone()
    y[:, 8:] = 0  # padding after position 7
    lx, vx = m(x)
    ly, vy = m(y)
    assert torch.allclose(lx[:, :8], ly[:, :8], atol=1e-5) and torch.allclose(vx[:, :8], vy[:, :8], atol=1e-6)


def test_entropy_and_log_probs_use_the_temperature():
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    for T in (0.5, 1.0, 2.0):
        p = torch.softmax(logits / T, -1)
        assert torch.allclose(entropy_from_logits(logits, T), -(p * p.log()).sum(-1))
    assert math.isclose(float(entropy_from_logits(torch.tensor([0.0, -1e9]), 1.0)), 0.0, abs_tol=1e-6)


def test_parameter_count_of_the_reference_shape():
    """2 layers, 4 heads, d=128, 64 positions, 64 tokens: about 413k parameters (TOOLCHAIN.md)."""
    m = GPT(GPTConfig())
    assert count_parameters(m) == 413_184


def test_too_long_sequences_and_bad_arguments_are_rejected():
    m = _model()
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        generate(m, torch.zeros(2, 3, dtype=torch.long), 4, eos_id=2, pad_id=0, temperature=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(m, torch.zeros(2, 3, dtype=torch.long), 0, eos_id=2, pad_id=0)
    with pytest.raises(ValueError, match="block_size"):
        generate(m, torch.zeros(2, 3, dtype=torch.long), 30, eos_id=2, pad_id=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_embd": 30, "n_head": 4}, "divisible"),
    ({"n_layer": 0}, "n_layer"),
    ({"vocab_size": 8, "banned_tokens": (9,)}, "banned_tokens"),
    ({"vocab_size": 2, "banned_tokens": (0, 1)}, "every token"),
    ({"block_size": 2.5}, "block_size"),
])
def test_bad_gpt_configs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


@pytest.mark.parametrize("eos_step", [0, 3])
def test_generation_stops_when_every_response_ended_and_draws_one_uniform_block_per_step(eos_step):
    """The random stream a rollout consumes: one (B, vocab) block of uniforms per generated step, none after
    the step where the last response ended (what keeps runs reproducible, on the CPU and with the overlapped
    end-of-batch check on CUDA)."""
    V, B = CFG.vocab_size, 5
    # every id but <eos> (2) banned from step eos_step on: all responses end exactly there
    m = _model(1, GPTConfig(**{**CFG.to_dict(), "banned_tokens": tuple(t for t in range(V) if t != 2)}))
    free = _model(1)
    prompts = torch.randint(3, V, (B, 4), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(7)
    if eos_step:
        gen_free = torch.Generator().manual_seed(7)
        head, _, _ = generate(free, prompts, eos_step, eos_id=None, pad_id=0, generator=gen_free)
        prompts = head  # eos_step tokens from an unconstrained model, then the forced <eos>
        g.set_state(gen_free.get_state())
    tokens, mask, _ = generate(m, prompts, 6, eos_id=2, pad_id=0, generator=g)
    assert (tokens[:, prompts.shape[1]] == 2).all() and (tokens[:, prompts.shape[1] + 1:] == 0).all()
    assert mask[:, 0].eq(1).all() and mask[:, 1:].eq(0).all()
    expected = torch.Generator().manual_seed(7)
    torch.rand((eos_step + 1) * B * V, generator=expected)  # eos_step free steps and the forced one
    assert torch.equal(g.get_state(), expected.get_state())
