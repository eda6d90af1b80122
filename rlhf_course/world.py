"""A synthetic language whose generating process is known exactly: short restaurant reviews.

Chapter 6 trains a language model on this language, a reward model on preferences about it, and then the
policy with PPO. Because the process that writes the reviews is known, three things that are unknowable for
real text can be computed exactly here:

* the true probability of any token string (its *fluency*): ``log p(y | x)`` under the world;
* the latent *rating* behind a review, as a posterior ``P(rating | x, y)``;
* how many tokens of a text are *errors*: words the grammar cannot have produced, as an expected count.

The process. A reviewer draws a rating ``r`` in ``{1, ..., 5}`` (uniformly) and writes a review with a small
probabilistic grammar, a finite automaton whose states are the grammar's positions ("after the noun",
"after an adjective", ...). Word choices that carry sentiment (adjectives, "loved"/"hated", "would
recommend"/"would not come back") are drawn with weights ``exp(kappa * valence * (r - 3) / 2)``: a 5-star
reviewer says "amazing" far more often than "awful". At every step, with probability ``epsilon``, the
reviewer instead slips: writes a stray word drawn uniformly from the vocabulary (or stops abruptly) and
stays where the grammar was. Every string of words therefore has a positive probability, and the
probability of a string is a sum over ratings and over which words were slips: the forward algorithm of a
hidden Markov model, computed exactly by :meth:`World.analyze`.

The gold reward (the "true" preference that the proxy reward model only sees through noisy comparisons)::

    gold(x, y) = (E[r | x, y] - 3) / 2  -  lambda * (E[# slips in y | x, y] + [y has no end])

Sentiment in ``[-1, 1]``, from the exact posterior of the rating, minus ``lambda`` per expected error in the
response and per unfinished response: a judge who likes positive reviews but will not reward broken ones.
Positive evidence saturates (the posterior cannot exceed 5 stars); errors do not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["World", "Tokenizer", "VOCAB", "PAD", "BOS", "EOS"]

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"

NOUNS = ("food", "service", "staff", "pizza", "pasta", "coffee", "place", "price", "music", "dessert")
INTENSIFIERS = ("very", "really", "so", "quite")
# adjective -> valence
ADJECTIVES = {
    "good": 1, "nice": 1, "tasty": 1, "fresh": 1, "great": 2, "amazing": 2, "perfect": 2, "excellent": 2,
    "bad": -1, "bland": -1, "slow": -1, "cold": -1, "rude": -1, "awful": -2, "terrible": -2, "horrible": -2,
}
VERBS = {"loved": 2, "liked": 1, "disliked": -1, "hated": -2}
FUNCTION_WORDS = (".", "and", "but", "the", "was", "is", "i", "it", "not", "would", "come", "back", "recommend")

VOCAB: tuple[str, ...] = (PAD, BOS, EOS, *FUNCTION_WORDS, *INTENSIFIERS, *NOUNS, *ADJECTIVES, *VERBS)
RATINGS = (1, 2, 3, 4, 5)


class Tokenizer:
    """Word-level tokenizer of the review language: one token per word; ``<pad>`` (0), ``<bos>`` and
    ``<eos>`` are distinct special tokens. ``size`` may exceed the vocabulary (unused ids at the end) so that
    a model's embedding table can have a round size."""

    def __init__(self, vocab: tuple[str, ...] = VOCAB):
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocabulary entries must be unique")
        self.vocab = tuple(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id = self.index[PAD], self.index[BOS], self.index[EOS]

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Token ids of a space-separated string; unknown words raise ``ValueError``."""
        ids = [self.bos_id] if bos else []
        for w in text.split():
            if w not in self.index:
                raise ValueError(f"unknown word {w!r}; the vocabulary is: {' '.join(self.vocab[3:])}")
            ids.append(self.index[w])
        return ids

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        """Text of token ids: ``<bos>`` and ``<pad>`` left out, ``<eos>`` shown as ``<eos>`` (and the end)."""
        words = []
        for i in np.asarray(ids).reshape(-1).tolist():
            i = int(i)
            if i in (self.pad_id, self.bos_id):
                continue
            words.append(self.vocab[i] if 0 <= i < len(self.vocab) else f"<unk{i}>")
            if stop_at_eos and i == self.eos_id:
                break
        return " ".join(words)


# ------------------------------------------------------------------------------------------------------
# The grammar: state -> list of (word or word group, next state, weight). A group's weight is shared among
# its words by valence; ``flip`` reverses valences ("not good" is said by unhappy reviewers).

_GRAMMAR = {
    "start": [("the", "noun", 1.0)],
    "noun": [(NOUNS, "verb", 1.0)],
    "verb": [("was", "adjp", 0.5), ("is", "adjp", 0.5)],
    "adjp": [(INTENSIFIERS, "adj", 0.25), ("not", "notadj", 0.10), ("ADJ", "after", 0.65)],
    "adj": [("ADJ", "after", 1.0)],
    "notadj": [("ADJ-", "after", 1.0)],
    "after": [("and", "adjp", 0.15), ("but", "but", 0.10), (".", "sent", 0.75)],
    "but": [("the", "cnoun", 1.0)],
    "cnoun": [(NOUNS, "cverb", 1.0)],
    "cverb": [("was", "cadjp", 0.5), ("is", "cadjp", 0.5)],
    "cadjp": [(INTENSIFIERS, "cadj", 0.25), ("ADJ-", "cafter", 0.75)],
    "cadj": [("ADJ-", "cafter", 1.0)],
    "cafter": [(".", "sent", 1.0)],
    "sent": [(EOS, "final", 0.6), ("the", "noun", 0.2), ("i", "iverb", 0.1), ("would", "would", 0.1)],
    "iverb": [("VERB", "iobj", 1.0)],
    "iobj": [("it", "vend", 0.5), ("the", "iobjn", 0.5)],
    "iobjn": [(NOUNS, "vend", 1.0)],
    "vend": [(".", "sent", 1.0)],
    "would": [("recommend", "wend", 0.35), ("come", "come", 0.35), ("not", "wnot", 0.30)],
    "wnot": [("recommend", "wend", 0.5), ("come", "come", 0.5)],
    "come": [("back", "wend", 1.0)],
    "wend": [(".", "sent", 1.0)],
    "final": [],
}
# valence of the word choices at "would": recommending or coming back is positive, "not" negative
_WOULD_VALENCE = {"recommend": 1, "come": 1, "not": -2}


@dataclass(frozen=True)
class World:
    """The review language: its grammar, its noise, and the gold reward (see the module docstring).

    Parameters: ``epsilon`` the probability of a slip at each step; ``kappa`` how strongly the rating steers
    word choice; ``error_weight`` the gold reward's ``lambda``; ``max_len`` the longest review sampled
    (tokens, with ``<bos>``; longer ones are resampled).
    """

    epsilon: float = 0.01
    kappa: float = 0.6
    error_weight: float = 0.5
    max_len: int = 48
    tokenizer: Tokenizer = field(default_factory=Tokenizer, compare=False, repr=False)

    def __post_init__(self):
        if not (isinstance(self.epsilon, (int, float)) and 0 < self.epsilon < 1):
            raise ValueError(f"epsilon must lie in (0, 1), got {self.epsilon!r}")
        if not (isinstance(self.kappa, (int, float)) and math.isfinite(self.kappa) and self.kappa >= 0):
            raise ValueError(f"kappa must be a finite number >= 0, got {self.kappa!r}")
        if not (isinstance(self.error_weight, (int, float)) and self.error_weight >= 0):
            raise ValueError(f"error_weight must be >= 0, got {self.error_weight!r}")
        if not (isinstance(self.max_len, int) and self.max_len >= 8):
            raise ValueError(f"max_len must be an integer >= 8, got {self.max_len!r}")
        self._build()

    # -- construction ------------------------------------------------------------------------------
    def _build(self) -> None:
        tok = self.tokenizer
        states = list(_GRAMMAR)
        sidx = {s: i for i, s in enumerate(states)}
        V, Q, R = len(tok), len(states), len(RATINGS)
        # grammar emission probabilities g[r, q, v] and the deterministic next state nxt[q, v]
        g = np.zeros((R, Q, V))
        nxt = np.full((Q, V), -1, dtype=np.int64)
        for s, rules in _GRAMMAR.items():
            q = sidx[s]
            for words, target, weight in rules:
                for ri, r in enumerate(RATINGS):
                    c = (r - 3) / 2
                    for w, wt in self._expand(words, s).items():
                        v = tok.index[w]
                        g[ri, q, v] += weight * wt(c)
                for w in self._expand(words, s):
                    v = tok.index[w]
                    if nxt[q, v] not in (-1, sidx[target]):
                        raise RuntimeError(f"grammar is ambiguous at state {s!r}, word {w!r}")
                    nxt[q, v] = sidx[target]
        # each state's choices are a distribution, for every rating (the "would" weights are tilted by it)
        live = np.array([s != "final" for s in states])
        g[:, live] /= g[:, live].sum(-1, keepdims=True)
        # noise: a uniform stray word, or a premature end
        noise = np.zeros(V)
        noise_ids = [i for i, w in enumerate(tok.vocab) if w not in (PAD, BOS)]
        noise[noise_ids] = 1.0 / len(noise_ids)
        final = sidx["final"]
        eps = self.epsilon
        # M[r, v, q, q'] = P(emit v and move to q' | q, r)
        M = np.zeros((R, V, Q, Q))
        for q in range(Q):
            if q == final:
                continue
            for v in range(V):
                if nxt[q, v] >= 0:
                    M[:, v, q, nxt[q, v]] += (1 - eps) * g[:, q, v]
                if noise[v] > 0:
                    M[:, v, q, final if v == tok.eos_id else q] += eps * noise[v]
        # a proper process: from every live state, emissions sum to one
        out = M.sum(axis=(1, 3))
        assert np.allclose(out[:, live], 1.0), "grammar emission probabilities must sum to one per state"
        object.__setattr__(self, "_states", tuple(states))
        object.__setattr__(self, "_g", g)
        object.__setattr__(self, "_next", nxt)
        object.__setattr__(self, "_noise", noise)
        object.__setattr__(self, "_M", M)
        object.__setattr__(self, "_start", sidx["start"])
        object.__setattr__(self, "_final", final)

    def _expand(self, words, state: str) -> dict:
        """A rule's words with their within-group weight as a function of ``c = (r - 3) / 2``."""
        k = self.kappa

        def by_valence(table, sign):
            z = lambda c: sum(math.exp(k * sign * val * c) for val in table.values())  # noqa: E731
            return {w: (lambda c, val=val: math.exp(k * sign * val * c) / z(c)) for w, val in table.items()}

        if words == "ADJ":
            return by_valence(ADJECTIVES, +1)
        if words == "ADJ-":
            return by_valence(ADJECTIVES, -1)
        if words == "VERB":
            return by_valence(VERBS, +1)
        if isinstance(words, tuple):
            return {w: (lambda c, n=len(words): 1.0 / n) for w in words}
        if state == "would":  # "recommend" / "come" / "not": weights tilted by the rating
            val = _WOULD_VALENCE[words]
            return {words: (lambda c, val=val: math.exp(k * val * c))}
        return {words: (lambda c: 1.0)}

    # -- the language --------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def prompts(self) -> np.ndarray:
        """The prompts of the RL stage: ``<bos> the NOUN was|is``, all 4 tokens long, shape ``(20, 4)``."""
        t = self.tokenizer
        return np.array([[t.bos_id, t.index["the"], t.index[n], t.index[v]] for n in NOUNS for v in ("was", "is")],
                        dtype=np.int64)

    def sample(self, n: int, seed: int | np.random.Generator = 0, noise: bool = True,
               return_slips: bool = False):
        """``n`` reviews drawn from the process: ``(tokens, ratings)`` (and the number of slips in each).

        ``tokens`` is ``(n, max_len)`` int64, each row ``<bos> ... <eos>`` then ``<pad>``; ``ratings`` the
        latent ratings. ``noise=False`` draws without slips (clean grammar only). Reviews longer than
        ``max_len`` tokens (about 1 in 1000 at the default 48) are drawn again: the samples come from the
        process conditioned on that length, a difference that the exact probabilities do not include.
        """
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"n must be a positive integer, got {n!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        tok = self.tokenizer
        out = np.full((n, self.max_len), tok.pad_id, dtype=np.int64)
        ratings = np.zeros(n, dtype=np.int64)
        slips_out = np.zeros(n, dtype=np.int64)
        todo = np.arange(n)
        gcum = np.cumsum(self._g / self._g.sum(-1, keepdims=True).clip(min=1e-300), axis=-1)
        ncum = np.cumsum(self._noise)
        while todo.size:
            m = todo.size
            r = rng.integers(0, len(RATINGS), size=m)
            q = np.full(m, self._start)
            rows = np.full((m, self.max_len), tok.pad_id, dtype=np.int64)
            rows[:, 0] = tok.bos_id
            done = np.zeros(m, bool)
            slips = np.zeros(m, dtype=np.int64)
            for t in range(1, self.max_len):
                live = ~done
                slip = (rng.random(m) < self.epsilon) & noise
                u = rng.random(m)
                v_noise = np.minimum((u[:, None] > ncum[None, :]).sum(1), len(ncum) - 1)
                v_gram = np.minimum((u[:, None] > gcum[r, q]).sum(1), gcum.shape[-1] - 1)
                v = np.where(slip, v_noise, v_gram)
                rows[live, t] = v[live]
                slips += slip & live
                q_next = np.where(slip, q, self._next[q, v])
                q_next = np.where(slip & (v == tok.eos_id), self._final, q_next)
                q = np.where(live, q_next, q)
                done |= v == tok.eos_id
                if done.all():
                    break
            ok = done  # reviews that ended within max_len; the others are drawn again
            out[todo[ok]] = rows[ok]
            ratings[todo[ok]] = np.array(RATINGS)[r[ok]]
            slips_out[todo[ok]] = slips[ok]
            todo = todo[~ok]
        return (out, ratings, slips_out) if return_slips else (out, ratings)

    # -- exact computations ---------------------------------------------------------------------------
    def analyze(self, tokens, count_from: int = 1) -> dict:
        """Exact quantities for a batch of texts, by the forward-backward algorithm over (rating, state).

        ``tokens``: ``(B, T)`` ids, each row ``<bos>`` then words, optionally ``<eos>``, then ``<pad>``.
        A row that ends with ``<eos>`` is a complete review; one that does not is a prefix (a review that
        starts this way). Errors are counted from position ``count_from`` on (e.g. the response's start).

        Returns float64 arrays of shape ``(B,)``: ``logp`` (log-probability of the review, or of the prefix),
        ``rating`` (posterior mean), ``sentiment`` (``(rating - 3) / 2``), ``errors`` (expected number of
        slips at positions ``>= count_from``), ``finished`` (1.0 when the row ends with ``<eos>``), and
        ``posterior`` ``(B, 5)``.
        """
        tok = self.tokenizer
        x = np.asarray(tokens)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"tokens must be a 2-D integer array (batch, time), got shape {x.shape}, dtype {x.dtype}")
        if x.size and ((x < 0).any() or (x >= self.vocab_size).any()):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}); this world's vocabulary has "
                             f"{self.vocab_size} tokens")
        if x.shape[1] == 0 or (x[:, 0] != tok.bos_id).any():
            raise ValueError("every row must start with <bos>")
        B, T = x.shape
        is_pad = x == tok.pad_id
        lengths = T - np.flip(np.cumprod(np.flip(is_pad, 1), 1), 1).sum(1)  # up to the last non-pad token
        if (is_pad & (np.arange(T)[None, :] < lengths[:, None])).any():
            raise ValueError("<pad> may only follow the text, not appear inside it")
        R, Q = self._M.shape[0], self._M.shape[2]
        # forward, scaled: alpha_t = alpha_{t-1} M[v_t] / c_t, so that alpha_t sums to one
        alpha = np.zeros((T, B, R, Q))
        alpha[0, :, :, self._start] = 1.0 / R
        logc = np.zeros((T, B))
        for t in range(1, T):
            live = t < lengths
            a = self._forward_step(alpha[t - 1], x[:, t])
            c = a.sum(axis=(1, 2))
            live &= c > 0
            a[live] /= c[live, None, None]
            alpha[t] = np.where(live[:, None, None], a, alpha[t - 1])
            logc[t] = np.where(live, np.log(np.where(c > 0, c, 1.0)), np.where(t < lengths, -np.inf, 0.0))
        last = x[np.arange(B), lengths - 1]
        finished = (last == tok.eos_id) & (lengths > 1)
        end = np.ones((B, R, Q))
        end[finished] = 0.0
        end[finished, :, self._final] = 1.0
        zT = (alpha[-1] * end).sum(axis=(1, 2))
        with np.errstate(divide="ignore"):
            logp = logc.sum(0) + np.log(zT)
        post = (alpha[-1] * end).sum(2) / np.where(zT > 0, zT, 1.0)[:, None]
        rating = post @ np.array(RATINGS, dtype=np.float64)
        # backward, scaled with the same c_t, for the posterior probability that token t was a slip
        beta = end.copy()
        errors = np.zeros(B)
        eps_noise = self.epsilon * self._noise
        for t in range(T - 1, 0, -1):
            live = (t < lengths) & np.isfinite(logc[t])
            v = x[:, t]
            # slip at t: from state q at t-1, emit v by noise (stay, or end on <eos>)
            beta_after = np.where((v == tok.eos_id)[:, None, None], beta[:, :, self._final, None], beta)
            slip = (alpha[t - 1] * eps_noise[v][:, None, None] * beta_after).sum(axis=(1, 2))
            p_slip = slip / np.exp(logc[t]).clip(min=1e-300) / np.where(zT > 0, zT, 1.0)
            errors += np.where(live & (t >= count_from), p_slip, 0.0)
            b = self._backward_step(beta, v)
            c = np.exp(np.where(live, logc[t], 0.0))
            beta = np.where(live[:, None, None], b / c[:, None, None], beta)
        bad = ~np.isfinite(logp)
        rating[bad], errors[bad] = np.nan, np.nan
        return {"logp": logp, "rating": rating, "sentiment": (rating - 3) / 2, "errors": errors,
                "finished": finished.astype(np.float64), "posterior": post, "lengths": lengths}

    # One step of the hidden Markov model for a batch, without forming the (Q x Q) matrices: from state q,
    # token v is either the grammar's choice (probability (1 - eps) g[r, q, v], moving to next[q, v]) or a
    # slip (eps * noise[v], staying at q, or ending the review when v is <eos>). The final state emits nothing.
    def _forward_step(self, alpha: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``alpha'[b, r, q'] = sum_q alpha[b, r, q] M[r, v_b, q, q']``."""
        B, R, Q = alpha.shape
        eps, final = self.epsilon, self._final
        gram = alpha * (1 - eps) * self._g[:, :, v].transpose(2, 0, 1)
        nxt = self._next[:, v].T  # (B, Q); -1 where the grammar cannot emit v
        nxt = np.where(nxt < 0, Q, nxt)
        flat = (np.arange(B)[:, None, None] * R + np.arange(R)[None, :, None]) * (Q + 1) + nxt[:, None, :]
        out = np.bincount(flat.ravel(), weights=gram.ravel(), minlength=B * R * (Q + 1)).reshape(B, R, Q + 1)[..., :Q]
        live_alpha = alpha.copy()
        live_alpha[:, :, final] = 0.0
        noise = eps * self._noise[v]
        is_eos = v == self.tokenizer.eos_id
        out += np.where(is_eos[:, None, None], 0.0, live_alpha * noise[:, None, None])
        out[:, :, final] += np.where(is_eos, noise, 0.0)[:, None] * live_alpha.sum(2)
        return out

    def _backward_step(self, beta: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``beta'[b, r, q] = sum_q' M[r, v_b, q, q'] beta[b, r, q']``."""
        B, R, Q = beta.shape
        eps, final = self.epsilon, self._final
        nxt = self._next[:, v].T
        valid = nxt >= 0
        idx = np.broadcast_to(np.where(valid, nxt, 0)[:, None, :], (B, R, Q))
        after_grammar = np.take_along_axis(beta, idx, axis=2) * valid[:, None, :]
        gram = (1 - eps) * self._g[:, :, v].transpose(2, 0, 1) * after_grammar
        is_eos = (v == self.tokenizer.eos_id)[:, None, None]
        after_slip = np.where(is_eos, beta[:, :, final, None], beta)
        out = gram + (eps * self._noise[v])[:, None, None] * after_slip
        out[:, :, final] = 0.0
        return out

    def log_prob(self, tokens) -> np.ndarray:
        """Exact ``log p`` of each row (a complete review if it ends with ``<eos>``, else a prefix)."""
        return self.analyze(tokens)["logp"]

    def gold_reward(self, tokens, prompt_len: int) -> np.ndarray:
        """``gold = (E[r | x, y] - 3) / 2 - lambda (E[# slips in y] + [y unfinished])`` for each row.

        ``tokens`` are prompt and response together, ``(B, T)``; the response starts at ``prompt_len``.
        """
        a = self.analyze(tokens, count_from=prompt_len)
        return a["sentiment"] - self.error_weight * (a["errors"] + 1.0 - a["finished"])
