"""rlhf_course.sequences and rlhf_course.bigrams: hand-computed cases, exact enumeration (chain rule of KL), padding, numpy/torch."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_course.kl import kl_divergence
from rlhf_course.bigrams import (
    bigram_logits,
    card000_example,
    enumerate_sequences,
    exact_sequence_kl,
    fit_bigram,
    sample_bigram,
)
from rlhf_course.sequences import (
    next_token_kl,
    sequence_logprob,
    sequence_penalty,
    token_logprobs,
    token_penalties,
)

torch.set_num_threads(1)
FAST = settings(max_examples=40, deadline=None)


def random_bigram(rng, v, scale=1.5):
    return rng.normal(0, scale, v), rng.normal(0, scale, (v, v))


# --------------------------------------------------------------------------------------------------
# token log-probabilities


def test_token_logprobs_hand_computed():
    # softmax([0, ln 3]) = [1/4, 3/4]
    logits = np.array([[0.0, math.log(3)], [0.0, math.log(3)]])
    np.testing.assert_allclose(token_logprobs(logits, [1, 0]), [math.log(0.75), math.log(0.25)], rtol=1e-12)
    # temperature 2 on [0, 2 ln 3] gives the same distribution
    np.testing.assert_allclose(token_logprobs(2 * logits, [1, 0], temperature=2.0),
                               [math.log(0.75), math.log(0.25)], rtol=1e-12)
    # temperature 1/2 on [0, ln 3]: softmax([0, 2 ln 3]) = [1/10, 9/10]
    np.testing.assert_allclose(token_logprobs(logits, [1, 0], temperature=0.5),
                               [math.log(0.9), math.log(0.1)], rtol=1e-12)


def test_token_logprobs_is_stable_for_large_logits():
    lp = token_logprobs(np.array([[1000.0, 0.0]]), [0])
    assert lp[0] == pytest.approx(-math.exp(-1000.0), abs=1e-300)
    assert token_logprobs(np.array([[1000.0, 0.0]]), [1])[0] == pytest.approx(-1000.0)
    lt = token_logprobs(torch.tensor([[1000.0, 0.0]]), torch.tensor([1]))
    assert lt.item() == pytest.approx(-1000.0)


def test_token_logprobs_ruled_out_token():
    logits = np.array([[0.0, -np.inf, 0.0]])
    assert token_logprobs(logits, [0])[0] == pytest.approx(math.log(0.5))
    assert token_logprobs(logits, [1])[0] == -np.inf


@given(st.integers(0, 10_000), st.floats(0.2, 5.0))
@FAST
def test_token_logprobs_normalize_and_match_torch(seed, temperature):
    rng = np.random.default_rng(seed)
    b, t, v = 2, 3, 5
    logits = rng.normal(0, 3, (b, t, v))
    all_lp = np.stack([token_logprobs(logits, np.full((b, t), k), temperature) for k in range(v)], -1)
    np.testing.assert_allclose(np.exp(all_lp).sum(-1), 1.0, rtol=1e-12)
    tokens = rng.integers(0, v, (b, t))
    lp_np = token_logprobs(logits, tokens, temperature)
    lp_t = token_logprobs(torch.tensor(logits), torch.tensor(tokens), temperature)
    assert isinstance(lp_np, np.ndarray) and isinstance(lp_t, torch.Tensor)
    np.testing.assert_allclose(lp_t.numpy(), lp_np, rtol=1e-10)
    # a higher temperature moves every distribution towards uniform: entropy does not decrease
    def entropy(temp):
        p = np.exp(np.stack([token_logprobs(logits, np.full((b, t), k), temp) for k in range(v)], -1))
        return -(p * np.log(p)).sum(-1)
    assert np.all(entropy(temperature * 1.5) >= entropy(temperature) - 1e-9)


def test_token_logprobs_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 6, (2, 4))
    temp = 0.7
    token_logprobs(logits, tokens, temp).sum().backward()
    expected = (torch.nn.functional.one_hot(tokens, 6) - torch.softmax(logits.detach() / temp, -1)) / temp
    torch.testing.assert_close(logits.grad, expected)


def test_token_logprobs_float_token_ids_and_dtypes():
    logits = np.zeros((3, 4), dtype=np.float32)
    out = token_logprobs(logits, [0.0, 1.0, 3.0])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, math.log(0.25), rtol=1e-6)
    out_t = token_logprobs(torch.zeros(3, 4, dtype=torch.float32), torch.tensor([0.0, 1.0, 3.0]))
    assert out_t.dtype == torch.float32


@pytest.mark.parametrize("logits, tokens, temperature, exc, words", [
    (np.zeros((2, 3)), [0, 1], 0.0, ValueError, "temperature"),
    (np.zeros((2, 3)), [0, 1], -1.0, ValueError, "temperature"),
    (np.zeros((2, 3)), [0, 1], float("nan"), ValueError, "temperature"),
    (np.zeros((2, 3)), [0, 1], "1", TypeError, "temperature"),
    (np.zeros((2, 3)), [0, 3], 1.0, ValueError, "[0, 3)"),
    (np.zeros((2, 3)), [-1, 0], 1.0, ValueError, "[0, 3)"),
    (np.zeros((2, 3)), [0.5, 1], 1.0, ValueError, "integer"),
    (np.zeros((2, 3)), [True, False], 1.0, TypeError, "integer"),
    (np.zeros((2, 3)), ["a", "b"], 1.0, TypeError, "integer"),
    (np.zeros((2, 3)), [0, 1, 2], 1.0, ValueError, "shape"),
    (np.zeros((2, 3)), [[0, 1]], 1.0, ValueError, "shape"),
    (np.array([[0.0, np.nan, 1.0], [0, 0, 0]]), [0, 1], 1.0, ValueError, "NaN"),
    (np.array([[0.0, np.inf, 1.0], [0, 0, 0]]), [0, 1], 1.0, ValueError, "+inf"),
    (np.array([[-np.inf] * 3, [0, 0, 0]]), [0, 1], 1.0, ValueError, "-inf everywhere"),
    (np.float64(1.0), [0], 1.0, ValueError, "scalar"),
    (np.zeros((2, 0)), [0, 0], 1.0, ValueError, "empty"),
    ("logits", [0], 1.0, TypeError, "array of numbers"),
    (torch.zeros(2, 3), np.array([0, 1]), 1.0, TypeError, "mix"),
    (np.zeros((2, 3)), torch.tensor([0, 1]), 1.0, TypeError, "mix"),
    (torch.zeros(2, 3), torch.tensor([0.5, 1.0]), 1.0, ValueError, "integer"),
    (torch.zeros(2, 3), torch.tensor([True, False]), 1.0, TypeError, "integer"),
    (torch.zeros(2, 3), torch.tensor([0, 3]), 1.0, ValueError, "[0, 3)"),
])
def test_token_logprobs_validation(logits, tokens, temperature, exc, words):
    with pytest.raises(exc, match=None) as info:
        token_logprobs(logits, tokens, temperature)
    assert words in str(info.value)


# --------------------------------------------------------------------------------------------------
# token and sequence penalties


def test_sequence_penalty_hand_computed():
    logp = [[-0.1, -0.2, -1.0], [-2.0, -0.5, -0.7]]
    ref = [[-0.3, -0.5, -1.0], [-1.0, -0.5, -0.2]]
    np.testing.assert_allclose(sequence_penalty(logp, ref), [0.5, -1.5], rtol=1e-12)
    mask = [[1, 1, 0], [1, 0, 0]]
    np.testing.assert_allclose(token_penalties(logp, ref, mask), [[0.2, 0.3, 0.0], [-1.0, 0.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(sequence_penalty(logp, ref, mask), [0.5, -1.0], rtol=1e-12)
    # equal policies: the penalty is exactly zero (card 000's first question, token by token)
    assert sequence_penalty([-0.3, -2.0], [-0.3, -2.0]) == 0.0
    # a single sequence (no batch axis) gives a scalar
    assert np.ndim(sequence_penalty([-0.3, -2.0], [-0.1, -1.0])) == 0


def test_sequence_penalty_is_difference_of_sequence_logprobs():
    rng = np.random.default_rng(1)
    logp, ref = -rng.exponential(size=(4, 7)), -rng.exponential(size=(4, 7))
    mask = (np.arange(7) < rng.integers(1, 8, size=(4, 1))).astype(float)
    np.testing.assert_allclose(sequence_penalty(logp, ref, mask),
                               sequence_logprob(logp, mask) - sequence_logprob(ref, mask), rtol=1e-12)


def test_reference_ruling_out_a_token_gives_infinite_penalty():
    assert sequence_penalty([-0.1, -0.2], [-0.1, -np.inf]) == np.inf
    # ... unless that position is padding
    assert sequence_penalty([-0.1, -0.2], [-0.1, -np.inf], [1, 0]) == 0.0


@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(0, 4),
       st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1e9, 7.0]))
@FAST
def test_padding_never_changes_the_penalty(seed, length, n_pad, garbage):
    """Padding, whatever values it holds, leaves the penalty, the log-probability and the per-token KL alone."""
    rng = np.random.default_rng(seed)
    logp, ref = -rng.exponential(size=length), -rng.exponential(size=length)
    base = sequence_penalty(logp, ref)
    padded_logp = np.concatenate([logp, np.full(n_pad, garbage)])
    padded_ref = np.concatenate([ref, np.full(n_pad, garbage)])
    mask = np.concatenate([np.ones(length), np.zeros(n_pad)])
    assert sequence_penalty(padded_logp, padded_ref, mask) == pytest.approx(base, rel=1e-12, abs=1e-15)
    assert sequence_logprob(padded_logp, mask) == pytest.approx(logp.sum(), rel=1e-12)
    pt = sequence_penalty(torch.tensor(padded_logp), torch.tensor(padded_ref), torch.tensor(mask))
    assert pt.item() == pytest.approx(base, rel=1e-12, abs=1e-15)
    tp = token_penalties(padded_logp, padded_ref, mask)
    assert np.all(tp[length:] == 0.0)


@given(st.integers(0, 10_000))
@FAST
def test_padded_batch_equals_each_sequence_alone(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, size=3)
    t = lengths.max() + rng.integers(0, 3)
    logp, ref = -rng.exponential(size=(3, t)), -rng.exponential(size=(3, t))
    mask = (np.arange(t) < lengths[:, None]).astype(float)
    batch = sequence_penalty(logp, ref, mask)
    alone = [sequence_penalty(logp[i, :n], ref[i, :n]) for i, n in enumerate(lengths)]
    np.testing.assert_allclose(batch, alone, rtol=1e-12, atol=1e-15)


def test_mask_kinds_agree():
    logp, ref = np.array([[-0.1, -0.2, -0.3]]), np.array([[-0.5, -0.5, -0.5]])
    want = sequence_penalty(logp, ref, np.array([[1.0, 1.0, 0.0]]))
    for mask in ([[1, 1, 0]], [[True, True, False]], np.array([[1, 1, 0]], dtype=np.int8)):
        np.testing.assert_allclose(sequence_penalty(logp, ref, mask), want)
    for mask in (torch.tensor([[1, 1, 0]]), torch.tensor([[True, True, False]]), torch.tensor([[1.0, 1.0, 0.0]])):
        out = sequence_penalty(torch.tensor(logp), torch.tensor(ref), mask)
        np.testing.assert_allclose(out.numpy(), want)


@given(st.integers(0, 10_000))
@FAST
def test_numpy_and_torch_agree(seed):
    rng = np.random.default_rng(seed)
    logp, ref = -rng.exponential(size=(3, 5)), -rng.exponential(size=(3, 5))
    mask = rng.integers(0, 2, size=(3, 5)).astype(float)
    for f in (token_penalties, sequence_penalty):
        a = f(logp, ref, mask)
        b = f(torch.tensor(logp), torch.tensor(ref), torch.tensor(mask))
        assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sequence_logprob(torch.tensor(logp), torch.tensor(mask)).numpy(),
                               sequence_logprob(logp, mask), rtol=1e-12)


def test_penalty_gradients_flow_and_ignore_padding():
    logp = torch.tensor([[-0.1, -0.2, np.nan], [-1.0, -0.3, -0.4]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-0.3, -0.5, -np.inf], [-1.0, -0.2, -0.1]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    sequence_penalty(logp, ref, mask).sum().backward()
    torch.testing.assert_close(logp.grad, mask.double())
    torch.testing.assert_close(ref.grad, -mask.double())


def test_penalty_gradient_through_logits_end_to_end():
    """d/dlogits of the sequence penalty, through token_logprobs, is finite and matches finite differences."""
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    ref_logits = torch.randn(1, 3, 4, dtype=torch.float64)
    tokens = torch.tensor([[2, 0, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])

    def f(lg):
        return sequence_penalty(token_logprobs(lg, tokens, 0.8), token_logprobs(ref_logits, tokens, 0.8), mask)

    assert torch.autograd.gradcheck(lambda lg: f(lg).sum(), (logits,))
    f(logits).sum().backward()
    assert torch.all(logits.grad[0, 2] == 0)  # the padded position gets no gradient


@pytest.mark.parametrize("logp, ref, mask, exc, words", [
    ([-0.1, -0.2, -0.3], [-0.1, -0.2], None, ValueError, "same shape"),
    ([[-0.1, -0.2]], [-0.1, -0.2], None, ValueError, "same shape"),
    ([-0.1, -0.2], [-0.1, -0.2], [1, 0, 0], ValueError, "shape"),
    ([-0.1, -0.2], [-0.1, -0.2], [1, 2], ValueError, "0 and 1"),
    ([-0.1, -0.2], [-0.1, -0.2], [1, 0.5], ValueError, "0 and 1"),
    ([-0.1, -0.2], [-0.1, -0.2], [1, np.nan], ValueError, "0 and 1"),
    ([-0.1, -0.2], [-0.1, -0.2], "10", TypeError, "0s and 1s"),
    ([-0.1, -0.2], [-0.1, -0.2], ["a", "b"], TypeError, "0s and 1s"),
    ([-0.1, np.nan], [-0.1, -0.2], None, ValueError, "NaN"),
    ([-0.1, -0.2], [np.nan, -0.2], None, ValueError, "NaN"),
    ([-0.1, 0.5], [-0.1, -0.2], None, ValueError, "positive"),
    ([-0.1, -np.inf], [-0.1, -0.2], None, ValueError, "-inf"),
    ([-0.1, np.inf], [-0.1, -0.2], None, ValueError, "+inf"),
    (-0.1, -0.2, None, ValueError, "time axis"),
    ("a", [-0.1], None, TypeError, "array of numbers"),
    (torch.tensor([-0.1]), np.array([-0.1]), None, TypeError, "mix"),
    (torch.tensor([-0.1]), torch.tensor([-0.1]), np.array([1]), TypeError, "same kind"),
    (np.array([-0.1]), np.array([-0.1]), torch.tensor([1]), TypeError, "same kind"),
    (torch.tensor([-0.1, -0.2]), torch.tensor([-0.1, -0.2]), torch.tensor([1, 3]), ValueError, "0 and 1"),
])
def test_penalty_validation(logp, ref, mask, exc, words):
    for f in (token_penalties, sequence_penalty):
        with pytest.raises(exc) as info:
            f(logp, ref, mask)
        assert words in str(info.value)


def test_sequence_logprob_validation():
    with pytest.raises(ValueError, match="positive"):
        sequence_logprob([0.3, -0.1])
    with pytest.raises(ValueError, match="NaN"):
        sequence_logprob([np.nan, -0.1])
    with pytest.raises(ValueError, match="shape"):
        sequence_logprob([-0.3, -0.1], [1, 1, 1])
    assert sequence_logprob([-0.3, -np.inf]) == -np.inf  # an impossible sequence: log-probability -inf


# --------------------------------------------------------------------------------------------------
# next-token KL


def test_next_token_kl_matches_categorical_kl():
    rng = np.random.default_rng(3)
    logits, ref_logits = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    for temp in (1.0, 0.6):
        p = np.exp(logits / temp) / np.exp(logits / temp).sum(-1, keepdims=True)
        q = np.exp(ref_logits / temp) / np.exp(ref_logits / temp).sum(-1, keepdims=True)
        np.testing.assert_allclose(next_token_kl(logits, ref_logits, temperature=temp), kl_divergence(p, q),
                                   rtol=1e-10)
        out_t = next_token_kl(torch.tensor(logits), torch.tensor(ref_logits), temperature=temp)
        np.testing.assert_allclose(out_t.numpy(), kl_divergence(p, q), rtol=1e-10)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    out = next_token_kl(logits, ref_logits, mask)
    assert np.all(out[mask == 0] == 0) and np.all(out[mask == 1] > 0)


def test_next_token_kl_with_ruled_out_tokens_has_finite_gradients():
    logits = torch.tensor([[[0.0, -np.inf, 1.0]]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[[0.5, 0.0, -np.inf]]], dtype=torch.float64, requires_grad=True)
    kl = next_token_kl(logits, ref)
    assert kl.item() == np.inf  # the policy puts mass on a token the reference rules out
    logits2 = torch.tensor([[[0.0, -np.inf, 1.0]]], dtype=torch.float64, requires_grad=True)
    ref2 = torch.tensor([[[0.5, 0.0, 0.2]]], dtype=torch.float64, requires_grad=True)
    kl2 = next_token_kl(logits2, ref2)
    kl2.sum().backward()
    assert torch.isfinite(logits2.grad).all() and torch.isfinite(ref2.grad).all()
    p = torch.softmax(logits2.detach(), -1)[0, 0].numpy()
    q = torch.softmax(ref2.detach(), -1)[0, 0].numpy()
    assert kl2.item() == pytest.approx(float(kl_divergence(p, q)), rel=1e-10)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(logits=np.zeros((2, 3)), ref_logits=np.zeros((2, 4))), ValueError, "same shape"),
    (dict(logits=np.zeros(3), ref_logits=np.zeros(3)), ValueError, "time axis"),
    (dict(logits=np.zeros((2, 3)), ref_logits=np.zeros((2, 3)), mask=[1, 1, 1]), ValueError, "shape"),
    (dict(logits=np.zeros((2, 3)), ref_logits=np.zeros((2, 3)), temperature=0), ValueError, "temperature"),
    (dict(logits=np.zeros((2, 3)), ref_logits=torch.zeros(2, 3)), TypeError, "mix"),
    (dict(logits=np.full((2, 3), np.nan), ref_logits=np.zeros((2, 3))), ValueError, "NaN"),
])
def test_next_token_kl_validation(kwargs, exc, words):
    with pytest.raises(exc) as info:
        next_token_kl(**kwargs)
    assert words in str(info.value)


# --------------------------------------------------------------------------------------------------
# bigram models, enumeration, and the chain rule of KL


def test_enumerate_sequences_counts_and_padding():
    tokens, mask = enumerate_sequences(3, 4)
    assert tokens.shape == (81, 4) and np.all(mask == 1)
    v, n, eos = 3, 4, 0
    tokens, mask = enumerate_sequences(v, n, eos=eos)
    expected = sum((v - 1) ** (k - 1) for k in range(1, n + 1)) + (v - 1) ** n
    assert tokens.shape == (expected, n) and len({tuple(t) for t in tokens}) == expected
    lengths = mask.sum(1).astype(int)
    for toks, m, ln in zip(tokens, mask, lengths):
        assert np.all(m[:ln] == 1) and np.all(m[ln:] == 0)
        assert np.all(toks[ln:] == eos)
        assert (toks[:ln] == eos).sum() == (1 if toks[ln - 1] == eos else 0)
        assert ln == n or toks[ln - 1] == eos


def test_enumeration_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    start, trans = random_bigram(rng, 4)
    for eos in (None, 0, 2):
        tokens, mask = enumerate_sequences(4, 5, eos=eos)
        lp = sequence_logprob(token_logprobs(bigram_logits(tokens, start, trans), tokens), mask)
        assert math.fsum(np.exp(lp)) == pytest.approx(1.0, abs=1e-12)


@given(st.integers(0, 10_000), st.integers(2, 4), st.integers(1, 5), st.booleans(), st.floats(0.5, 2.0))
@settings(max_examples=30, deadline=None)
def test_chain_rule_of_kl_by_enumeration(seed, v, max_len, with_eos, temperature):
    """KL over whole sequences = E[sum of token penalties] = E[sum_t m_t KL(next-token distributions)]."""
    rng = np.random.default_rng(seed)
    pi, ref = random_bigram(rng, v), random_bigram(rng, v)
    tokens, mask = enumerate_sequences(v, max_len, eos=0 if with_eos else None)
    logits, ref_logits = bigram_logits(tokens, *pi), bigram_logits(tokens, *ref)
    logp = token_logprobs(logits, tokens, temperature)
    ref_logp = token_logprobs(ref_logits, tokens, temperature)
    seq_lp, seq_ref_lp = sequence_logprob(logp, mask), sequence_logprob(ref_logp, mask)
    prob = np.exp(seq_lp)
    kl_seq = exact_sequence_kl(seq_lp, seq_ref_lp)
    expected_penalty = math.fsum(prob * sequence_penalty(logp, ref_logp, mask))
    chain = math.fsum(prob * next_token_kl(logits, ref_logits, mask, temperature).sum(-1))
    assert expected_penalty == pytest.approx(kl_seq, rel=1e-9, abs=1e-12)
    assert chain == pytest.approx(kl_seq, rel=1e-9, abs=1e-12)
    assert kl_seq >= 0


def test_exact_sequence_kl_equals_categorical_kl():
    rng = np.random.default_rng(5)
    pi, ref = random_bigram(rng, 3), random_bigram(rng, 3)
    tokens, mask = enumerate_sequences(3, 4, eos=1)
    lp = sequence_logprob(token_logprobs(bigram_logits(tokens, *pi), tokens), mask)
    lq = sequence_logprob(token_logprobs(bigram_logits(tokens, *ref), tokens), mask)
    p, q = np.exp(lp), np.exp(lq)
    assert exact_sequence_kl(lp, lq) == pytest.approx(float(kl_divergence(p / p.sum(), q / q.sum())), rel=1e-9)


def test_exact_sequence_kl_refuses_incomplete_enumerations():
    with pytest.raises(ValueError, match="incomplete"):
        exact_sequence_kl(np.log([0.5, 0.3]), np.log([0.5, 0.5]))
    with pytest.raises(ValueError, match="same shape"):
        exact_sequence_kl(np.log([0.5, 0.5]), np.log([1.0]))
    with pytest.raises(ValueError, match="1-d"):
        exact_sequence_kl(np.log([[0.5, 0.5]]), np.log([[0.5, 0.5]]))


def test_bigram_logits_hand_and_torch():
    start = np.array([0.0, 1.0, 2.0])
    trans = np.arange(9.0).reshape(3, 3)
    out = bigram_logits([[2, 0, 1]], start, trans)
    np.testing.assert_array_equal(out[0], [start, trans[2], trans[0]])
    st_, tr_ = torch.tensor(start, requires_grad=True), torch.tensor(trans, requires_grad=True)
    out_t = bigram_logits(torch.tensor([[2, 0, 1]]), st_, tr_)
    np.testing.assert_array_equal(out_t.detach().numpy(), out)
    out_t.sum().backward()
    np.testing.assert_array_equal(st_.grad.numpy(), [1, 1, 1])
    np.testing.assert_array_equal(tr_.grad.numpy(), [[1, 1, 1], [0, 0, 0], [1, 1, 1]])


@pytest.mark.parametrize("tokens, start, trans, exc, words", [
    ([[0, 3]], np.zeros(3), np.zeros((3, 3)), ValueError, "[0, 3)"),
    ([[0, 1]], np.zeros((1, 3)), np.zeros((3, 3)), ValueError, "(V,)"),
    ([[0, 1]], np.zeros(3), np.zeros((3, 2)), ValueError, "(V, V)"),
    (np.zeros((1, 0), dtype=int), np.zeros(3), np.zeros((3, 3)), ValueError, "at least one"),
    (0, np.zeros(3), np.zeros((3, 3)), ValueError, "time axis"),
    ([[0, 1]], torch.zeros(3), np.zeros((3, 3)), TypeError, "mix"),
    ([[0, 1]], np.full(3, np.nan), np.zeros((3, 3)), ValueError, "NaN"),
])
def test_bigram_logits_validation(tokens, start, trans, exc, words):
    with pytest.raises(exc) as info:
        bigram_logits(tokens, start, trans)
    assert words in str(info.value)


def test_fit_bigram_counts():
    start, trans = fit_bigram([[1, 2, 0], [1, 0]], vocab_size=3, weights=[3.0, 1.0], smoothing=1.0)
    np.testing.assert_allclose(np.exp(start), np.array([1, 5, 1]) / 7)
    np.testing.assert_allclose(np.exp(trans[1]), np.array([2, 1, 4]) / 7)  # 1->0 once, 1->2 three times
    np.testing.assert_allclose(np.exp(trans[2]), np.array([4, 1, 1]) / 6)
    np.testing.assert_allclose(np.exp(trans[0]), np.ones(3) / 3)  # never left the end token: smoothing only


@pytest.mark.parametrize("args, kwargs, exc", [
    (([], 3), {}, ValueError),
    (([[0, 5]], 3), {}, ValueError),
    (([[0, 1]], 0), {}, ValueError),
    (([[0, 1]], 3), {"smoothing": 0.0}, ValueError),
    (([[0, 1]], 3), {"weights": [1.0, 2.0]}, ValueError),
    (([[0, 1]], 3), {"weights": [-1.0]}, ValueError),
    (([[0, 1]], 3), {"weights": torch.ones(1)}, TypeError),
    (([[]], 3), {}, ValueError),
    (([[0.5, 1]], 3), {}, ValueError),
])
def test_fit_bigram_validation(args, kwargs, exc):
    with pytest.raises(exc):
        fit_bigram(*args, **kwargs)


def test_sampling_matches_enumerated_probabilities_and_kl():
    rng = np.random.default_rng(11)
    pi, ref = random_bigram(rng, 3), random_bigram(rng, 3)
    tokens, mask = sample_bigram(*pi, n=20_000, max_len=4, eos=0, temperature=0.9, seed=1)
    assert np.all(tokens[mask == 0] == 0)
    enum_tokens, enum_mask = enumerate_sequences(3, 4, eos=0)
    enum_lp = sequence_logprob(token_logprobs(bigram_logits(enum_tokens, *pi), enum_tokens, 0.9), enum_mask)
    index = {tuple(t): i for i, t in enumerate(enum_tokens)}
    counts = np.bincount([index[tuple(t)] for t in tokens], minlength=len(enum_tokens))
    p = np.exp(enum_lp)
    se = np.sqrt(p * (1 - p) / len(tokens))
    assert np.all(np.abs(counts / len(tokens) - p) <= 5 * se + 1e-4)
    logp = token_logprobs(bigram_logits(tokens, *pi), tokens, 0.9)
    ref_logp = token_logprobs(bigram_logits(tokens, *ref), tokens, 0.9)
    pen = sequence_penalty(logp, ref_logp, mask)
    enum_ref_lp = sequence_logprob(token_logprobs(bigram_logits(enum_tokens, *ref), enum_tokens, 0.9), enum_mask)
    kl = exact_sequence_kl(enum_lp, enum_ref_lp)
    assert abs(pen.mean() - kl) <= 5 * pen.std() / np.sqrt(len(pen))


def test_sample_bigram_validation():
    start, trans = np.zeros(3), np.zeros((3, 3))
    with pytest.raises(ValueError):
        sample_bigram(start, trans, n=0, max_len=3)
    with pytest.raises(ValueError):
        sample_bigram(start, trans, n=2, max_len=3, eos=3)
    with pytest.raises(ValueError):
        sample_bigram(start, trans, n=2, max_len=3, temperature=0.0)
    tokens, mask = sample_bigram(start, trans, n=5, max_len=3)
    assert tokens.shape == (5, 3) and np.all(mask == 1)


@pytest.mark.parametrize("args, kwargs, exc, words", [
    ((3, 30), {}, ValueError, "too many"),
    ((0, 3), {}, ValueError, "positive integer"),
    ((3, 0), {}, ValueError, "positive integer"),
    ((3, 2), {"eos": 3}, ValueError, "eos"),
    ((3, 2), {"eos": 0, "pad": 5}, ValueError, "pad"),
])
def test_enumerate_sequences_validation(args, kwargs, exc, words):
    with pytest.raises(exc) as info:
        enumerate_sequences(*args, **kwargs)
    assert words in str(info.value)


# --------------------------------------------------------------------------------------------------
# card 000: "Yes." against the long affirmative


def test_card000_long_unlikely_response_pays_more():
    ex = card000_example()
    ref_seq = sequence_logprob(ex["ref_logp"], ex["mask"])
    pol_seq = sequence_logprob(ex["logp"], ex["mask"])
    assert math.exp(ref_seq[0]) > 0.5 and math.exp(ref_seq[1]) < 1e-9  # card's premise: A likely, B near zero
    pen = sequence_penalty(ex["logp"], ex["ref_logp"], ex["mask"])
    assert pen[1] > 10 > 0 > pen[0]
    np.testing.assert_allclose(pen, pol_seq - ref_seq, rtol=1e-12)
    assert len(ex["tokens_B"]) > 8 * len(ex["tokens_A"])
    # the penalty is not a per-token fee: tokens where the two models agree cost (almost) nothing
    tp = token_penalties(ex["logp"], ex["ref_logp"], ex["mask"])[1, : len(ex["tokens_B"])]
    assert (np.abs(tp) < 0.05).sum() >= 8 and (tp < 0).any()
    # the chapter's example of agreement: after "data" both models say "you"
    words = [ex["vocab"][k] for k in ex["tokens_B"]]
    t = words.index("data") + 1
    assert words[t] == "you" and abs(tp[t]) < 0.05
    assert min(ex["logp"][1, t], ex["ref_logp"][1, t]) > math.log(0.9)


def test_card000_no_detail_reward_means_no_penalty():
    ex = card000_example(detail=0.0)
    np.testing.assert_allclose(sequence_penalty(ex["logp"], ex["ref_logp"], ex["mask"]), 0.0, atol=1e-12)


@given(st.floats(0.02, 1.0))
@settings(max_examples=15, deadline=None)
def test_card000_more_detail_reward_more_penalty_on_b(detail):
    lo = sequence_penalty(*(card000_example(detail)[k] for k in ("logp", "ref_logp", "mask")))
    hi = sequence_penalty(*(card000_example(detail * 1.3)[k] for k in ("logp", "ref_logp", "mask")))
    assert hi[1] > lo[1] > 0 and lo[0] < 0


def test_card000_validation():
    with pytest.raises(TypeError):
        card000_example("big")
    with pytest.raises(ValueError):
        card000_example(float("inf"))


# --------------------------------------------------------------------------------------------------
# exercise 02: the solution passes every check, the generated exercise runs and says "not answered"


def _run_notebook_checks(path, monkeypatch):
    """Execute a notebook's code cells in-process (the Colab cell skipped), recording every check's grade."""
    import nbformat

    from rlhf_course import checks
    from rlhf_course.notebooks import is_colab_cell
    from rlhf_course.questions import get_question

    results = []
    monkeypatch.setattr(checks, "check",
                        lambda qid, answer=Ellipsis: results.append(checks.grade(get_question(qid),
                                                                                 checks.collect(get_question(qid), answer))))
    nb = nbformat.read(path, as_version=4)
    namespace = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and not is_colab_cell(cell):
            exec(compile(cell.source, f"{path.name}", "exec"), namespace)
    return results


def test_solution_02_passes_every_check(monkeypatch):
    from pathlib import Path

    from rlhf_course.questions import questions_for

    root = Path(__file__).resolve().parents[1]
    results = _run_notebook_checks(root / "solutions" / "02_sequences.ipynb", monkeypatch)
    assert [r.id for r in results] == [q.id for q in questions_for("02")]
    assert all(r.status == "passed" for r in results), "\n".join(str(r) for r in results if r.status != "passed")
    exercise = _run_notebook_checks(root / "exercises" / "02_sequences.ipynb", monkeypatch)
    assert [r.status for r in exercise] == ["not-answered"] * len(results)


def test_exercise_02_wrong_answers_get_their_feedback():
    from rlhf_course.checks import collect, grade
    from rlhf_course.questions import get_question

    for qid in ("02.larger_penalty", "02.sum_of_token_ratios", "02.zero_sequence_penalty"):
        q = get_question(qid)
        for label in set(q.choices) - {q.answer}:
            res = grade(q, collect(q, label))
            assert res.status == "failed" and res.messages[0] == q.feedback[label]
    q = get_question("02.sequence_penalty")
    unmasked = grade(q, collect(q, lambda logp, ref, mask: np.sum(logp - ref, axis=-1)))
    assert unmasked.status == "partial"
    assert {c.name for c in unmasked.cases if not c.passed} >= {"padding at the end is ignored, whatever it holds",
                                                                "a batch against one reference row: would broadcast silently"}
    ex = card000_example(0.5)
    assert get_question("02.card000_penalties").answer[1] > 0 > get_question("02.card000_penalties").answer[0]
    assert ex["tokens_B"] == card000_example()["tokens_B"]
