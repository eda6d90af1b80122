"""The synthetic review language of chapter 6: exact probabilities, posteriors and error counts."""
import itertools

import numpy as np
import pytest

from rlhf_course.world import RATINGS, Tokenizer, World

WORLD = World()
TOK = WORLD.tokenizer
WORDS = [i for i in range(len(TOK)) if i not in (TOK.pad_id, TOK.bos_id, TOK.eos_id)]


def _rows(prefix, continuations, eos):
    p = np.asarray(prefix)
    out = [np.concatenate([p, np.asarray(c, dtype=np.int64), [TOK.eos_id] if eos else []]).astype(np.int64)
           for c in continuations]
    return np.stack(out)


def test_probabilities_of_all_continuations_sum_to_one():
    """Responses of 0 or 1 words that end there, plus every 2-word start of a response: total probability 1."""
    prompt = TOK.encode("the food was")
    lp_prompt = WORLD.log_prob(np.array([prompt]))[0]
    total = 0.0
    for n in range(2):
        conts = list(itertools.product(WORDS, repeat=n))
        total += np.exp(WORLD.log_prob(_rows(prompt, conts, eos=True)) - lp_prompt).sum()
    total += np.exp(WORLD.log_prob(_rows(prompt, itertools.product(WORDS, repeat=2), eos=False)) - lp_prompt).sum()
    assert total == pytest.approx(1.0, abs=1e-10)


def test_review_probabilities_from_the_start_sum_to_one():
    """From <bos>: the empty review, every 1-word review, and every 2-token prefix that goes on or ends."""
    rows = np.array([[TOK.bos_id, a, b] for a in WORDS for b in WORDS + [TOK.eos_id]])
    total = np.exp(WORLD.log_prob(rows)).sum() + np.exp(WORLD.log_prob(np.array([[TOK.bos_id, TOK.eos_id]]))).sum()
    assert total == pytest.approx(1.0, abs=1e-10)


def test_sampler_matches_exact_probabilities():
    tokens, _ = WORLD.sample(40_000, seed=7)
    texts = [tuple(r[r != TOK.pad_id]) for r in tokens]
    uniq, counts = np.unique(np.array([hash(t) for t in texts]), return_counts=True)
    by_hash = {hash(t): t for t in texts}
    top = np.argsort(-counts)[:5]
    L = max(len(by_hash[uniq[i]]) for i in top)
    rows = np.full((5, L), TOK.pad_id)
    for j, i in enumerate(top):
        t = by_hash[uniq[i]]
        rows[j, :len(t)] = t
    p = np.exp(WORLD.log_prob(rows))
    freq = counts[top] / len(texts)
    sigma = np.sqrt(p * (1 - p) / len(texts))
    assert np.all(np.abs(freq - p) < 5 * sigma + 1e-4), (freq, p)


def test_posterior_and_expected_errors_are_calibrated():
    """Tower property: E[P(r | y)] = P(r) = 1/5 and E[E[# slips | y]] = E[# slips] on the world's own samples."""
    tokens, ratings, slips = WORLD.sample(10_000, seed=3, return_slips=True)
    a = WORLD.analyze(tokens)
    n = len(ratings)
    assert np.allclose(a["posterior"].sum(1), 1.0)
    assert np.all(np.abs(a["posterior"].mean(0) - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n))
    assert abs(a["errors"].mean() - slips.mean()) < 4 * slips.std() / np.sqrt(n)
    assert abs(a["rating"].mean() - ratings.mean()) < 4 * ratings.std() / np.sqrt(n)
    assert np.corrcoef(a["rating"], ratings)[0, 1] > 0.6


def test_gold_reward_prefers_positive_fluent_finished_reviews():
    texts = ["the food was amazing . <eos>",
             "the food was amazing and perfect . i loved it . <eos>",
             "the food was terrible . <eos>",
             "the food was amazing amazing amazing amazing . <eos>",
             "the food was amazing and perfect . i loved it"]
    rows = [TOK.encode(t) for t in texts]
    x = np.full((len(rows), max(map(len, rows))), TOK.pad_id)
    for i, r in enumerate(rows):
        x[i, :len(r)] = r
    g = WORLD.gold_reward(x, prompt_len=4)
    a = WORLD.analyze(x, count_from=4)
    assert g[1] > g[0] > g[2]          # more positive evidence is better, negative is worse
    assert g[3] < g[0]                 # repeated words are slips: disfluent text loses gold reward
    assert a["errors"][3] > 2.5 and a["errors"][0] < 0.05
    assert a["finished"][4] == 0 and g[4] < g[1]  # an unfinished review pays for it
    assert np.isclose(g[0], a["sentiment"][0] - WORLD.error_weight * a["errors"][0])


def test_rating_posterior_moves_with_evidence():
    x = np.array([TOK.encode("the food was amazing . <eos>"), TOK.encode("the food was awful . <eos>")])
    post = WORLD.analyze(x)["posterior"]
    assert post[0, -1] > post[0, 0] and post[1, 0] > post[1, -1]
    assert len(RATINGS) == post.shape[1]


def test_tokenizer_round_trip_and_special_tokens():
    tok = Tokenizer()
    assert len({tok.pad_id, tok.bos_id, tok.eos_id}) == 3 and tok.pad_id == 0
    ids = tok.encode("the pizza was great . <eos>")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids + [tok.pad_id, tok.pad_id]) == "the pizza was great . <eos>"
    with pytest.raises(ValueError, match="unknown word"):
        tok.encode("the pizza was delicious")


def test_prompts_are_four_tokens_without_padding():
    p = WORLD.prompts()
    assert p.shape == (20, 4) and (p[:, 0] == TOK.bos_id).all() and (p != TOK.pad_id).all()


@pytest.mark.parametrize("bad, match", [
    (np.array([[5, 6, 7]]), "start with <bos>"),
    (np.array([[1, 5, 0, 6]]), "<pad> may only follow"),
    (np.array([[1, 99]]), "token ids must lie"),
    (np.array([1, 5, 6]), "2-D integer array"),
])
def test_analyze_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        WORLD.analyze(bad)


@pytest.mark.parametrize("kwargs, match", [({"epsilon": 0.0}, "epsilon"), ({"kappa": -1.0}, "kappa"),
                                           ({"error_weight": -0.5}, "error_weight"), ({"max_len": 3}, "max_len")])
def test_world_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        World(**kwargs)
