"""Enumerable problems (chapter 5), and their exact quantities: what every algorithm is held against.

Two problems, both small enough that every response can be listed, so that the trained policy can be
compared with ``pi*_beta`` itself (:mod:`rlhf_course.objective`) rather than eyeballed:

* a **prompt-conditioned bandit**: a few prompts ``x``, ``K`` possible outputs each, a known reference
  ``pi_ref(y | x)`` and reward ``r(x, y)`` (:func:`make_bandit`);
* **short sequences** over a tiny vocabulary: a tabular autoregressive policy
  ``pi(y | x) = prod_t pi(y_t | x, y_<t)`` with one row of logits per prefix, optionally with an
  end-of-sequence token (:func:`make_sequences`). The reward scores the complete sequence.

The bandit is the length-1 case of the second, so one :class:`TabularProblem` and one trainer serve both.

Notation (the book's). Prompts are equally likely. For a response ``y = y_1..y_T`` to prompt ``x``, write
``s_t = (x, y_<t)`` for the state before token ``t``, ``logp_t = log pi(y_t | s_t)``, ``ref_logp_t``
likewise under ``pi_ref``, and ``log_ratio_t = logp_t - ref_logp_t``. The objective is

    J(pi) = E_x [ E_{y ~ pi(.|x)} r(x, y) - beta KL(pi(.|x) || pi_ref(.|x)) ],
    pi*_beta(y | x) = pi_ref(y | x) exp(r(x, y) / beta) / Z(x)          (over whole sequences)

and its gradient (the book's theorem) is

    grad J = E[ sum_t grad logp_t (r(x, y) - beta sum_{s >= t} log_ratio_s - b(s_t)) ]

for any baseline ``b`` that depends on the state only.

The trainers that run on them are :mod:`rlhf_course.toy.trainers`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..kl import kl_divergence
from ..objective import optimal_policy

__all__ = [
    "TabularProblem", "make_bandit", "make_sequences", "optimum", "tv_distance", "exact_summary", "frontier",
    "frontier_at", "beta_for_kl", "forward_kl_optimum", "exact_values", "logits_of", "alternation_score",
    "first_token_score",
]

DTYPE = torch.float64


# --------------------------------------------------------------------------------------------------
# problems


@dataclass(frozen=True, eq=False)
class TabularProblem:
    """Prompts x enumerated responses, with a tabular reference policy and a reward per response.

    Attributes (``P`` prompts, ``S`` states = prefixes that are not complete, ``V`` tokens, ``N``
    complete responses, ``T`` the longest response):

    * ``ref_logits`` ``(P, S, V)``: the reference's logits for the next token in every state;
    * ``scores`` ``(P, N)``: the reward ``r(x, y)`` of every complete response;
    * ``tokens`` ``(N, T)``: the responses, padded with 0; ``mask`` ``(N, T)``: 1 on real tokens;
    * ``states`` ``(N, T)``: the index of the state ``y_<t`` before each token (0 on padding);
    * ``depth`` ``(S,)``: the length of each state's prefix;
    * ``labels``: a printable name per response (``"ab."`` with ``"."`` the end token), ``prompts``: names.
    """

    ref_logits: torch.Tensor
    scores: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    states: torch.Tensor
    depth: torch.Tensor
    labels: tuple[str, ...]
    prompts: tuple[str, ...]
    eos: int | None = None

    @property
    def n_prompts(self) -> int:
        return self.ref_logits.shape[0]

    @property
    def n_states(self) -> int:
        return self.ref_logits.shape[1]

    @property
    def vocab(self) -> int:
        return self.ref_logits.shape[2]

    @property
    def n_responses(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def token_logprobs(self, logits: torch.Tensor) -> torch.Tensor:
        """``log pi(y_t | x, y_<t)`` for every prompt, response and position: ``(P, N, T)``, 0 on padding."""
        _check_logits(self, logits)
        lp = torch.log_softmax(logits, dim=-1)
        return lp[:, self.states, self.tokens] * self.mask

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``pi(y | x) = exp(sum_t log pi(y_t | x, y_<t))`` over whole responses: ``(P, N)``, rows sum to 1."""
        return torch.exp(self.token_logprobs(logits).sum(-1))

    @property
    def ref_token_logprobs(self) -> torch.Tensor:
        return self.token_logprobs(self.ref_logits)

    @property
    def ref_probs(self) -> torch.Tensor:
        return self.probs(self.ref_logits)


def _check_logits(problem: TabularProblem, logits) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch tensor, got {type(logits).__name__}")
    if tuple(logits.shape) != tuple(problem.ref_logits.shape):
        raise ValueError(f"logits must have shape (prompts, states, vocab) = {tuple(problem.ref_logits.shape)}, "
                         f"got {tuple(logits.shape)}")


def _enumerate(vocab: int, length: int, eos: int | None):
    """All complete responses (lexicographic), the prefix states and their depths."""
    content = [v for v in range(vocab) if v != eos]
    states: dict[tuple, int] = {(): 0}
    frontier_ = [()]
    for _ in range(length - 1):
        nxt = []
        for prefix in frontier_:
            for v in content:
                states[prefix + (v,)] = len(states)
                nxt.append(prefix + (v,))
        frontier_ = nxt
    responses = []

    def grow(prefix):
        for v in range(vocab):
            y = prefix + (v,)
            if v == eos or len(y) == length:
                responses.append(y)
            else:
                grow(y)

    grow(())
    T = length
    tokens = torch.zeros(len(responses), T, dtype=torch.long)
    mask = torch.zeros(len(responses), T, dtype=DTYPE)
    st = torch.zeros(len(responses), T, dtype=torch.long)
    for n, y in enumerate(responses):
        for t, v in enumerate(y):
            tokens[n, t], mask[n, t], st[n, t] = v, 1.0, states[y[:t]]
    depth = torch.tensor([len(p) for p in states], dtype=torch.long)
    return responses, tokens, mask, st, depth, states


def _as_table(x, name: str, ndim: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float64) if not isinstance(x, torch.Tensor) else x).to(DTYPE)
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t.clone()


DEFAULT_BANDIT_REF = ((0.5, 0.3, 0.2), (0.6, 0.3, 0.1))
DEFAULT_BANDIT_REWARDS = ((1.0, 0.0, -1.0), (0.0, 0.5, 1.0))


def make_bandit(ref_probs=DEFAULT_BANDIT_REF, rewards=DEFAULT_BANDIT_REWARDS) -> TabularProblem:
    """A prompt-conditioned bandit: ``ref_probs`` and ``rewards`` shaped ``(prompts, K)``.

    The default has two prompts and three outputs. Prompt 0 is chapter 4's reference case
    (``pi_ref = [.5, .3, .2]``, ``r = [1, 0, -1]``); on prompt 1 the best output is the one the
    reference makes least likely (``pi_ref = [.6, .3, .1]``, ``r = [0, .5, 1]``).
    """
    ref = _as_table(ref_probs, "ref_probs", 2)
    r = _as_table(rewards, "rewards", 2)
    if ref.shape != r.shape:
        raise ValueError(f"ref_probs and rewards must have the same shape (prompts, K), got "
                         f"{tuple(ref.shape)} and {tuple(r.shape)}")
    if ref.shape[1] < 2:
        raise ValueError("a bandit needs at least two outputs per prompt")
    if (ref <= 0).any() or not torch.allclose(ref.sum(1), torch.ones(ref.shape[0], dtype=DTYPE), atol=1e-9):
        raise ValueError("every row of ref_probs must be > 0 and sum to 1")
    K = ref.shape[1]
    _, tokens, mask, st, depth, _ = _enumerate(K, 1, None)
    return TabularProblem(
        ref_logits=torch.log(ref)[:, None, :], scores=r, tokens=tokens, mask=mask, states=st, depth=depth,
        labels=tuple(f"y{k}" for k in range(K)), prompts=tuple(f"x{p}" for p in range(ref.shape[0])))


def alternation_score(y: tuple[int, ...]) -> float:
    """Share of adjacent pairs of tokens that differ (a response of one token scores 0)."""
    return 0.0 if len(y) < 2 else sum(a != b for a, b in zip(y, y[1:])) / (len(y) - 1)


def first_token_score(y: tuple[int, ...]) -> float:
    """Share of tokens equal to token 0 ("a")."""
    return 0.0 if not y else sum(v == 0 for v in y) / len(y)


def make_sequences(vocab: int = 3, length: int = 3, eos: bool = False,
                   score_fns: Sequence[Callable[[tuple[int, ...]], float]] = (alternation_score,
                                                                              first_token_score),
                   stay: float = 0.6, stop: float = 0.2) -> TabularProblem:
    """Short sequences over a tiny vocabulary, one prompt per function in ``score_fns``.

    The reference is "sticky", the habit of a language model that repeats itself: the first token is
    drawn with probabilities proportional to ``vocab, vocab - 1, ..., 1`` over the content tokens; after
    that it repeats the previous token with probability ``stay`` and spreads the rest evenly. With
    ``eos=True`` the last token of the vocabulary ends the response; it has probability ``stop`` at
    every step, the others share the rest as above (responses are then 1 to ``length`` tokens long,
    padded; the response ``"."`` says nothing at all). Each prompt's
    reward ``score_fn(content_tokens)`` sees the response without its end token. The defaults reward
    alternation (prompt 0), the opposite of the reference's habit, and the token ``a`` (prompt 1).
    """
    if not (isinstance(vocab, int) and isinstance(length, int)) or vocab < 2 + int(eos) or length < 1:
        raise ValueError(f"vocab must be an int >= {2 + int(eos)} and length an int >= 1, got {vocab}, {length}")
    if vocab ** length > 5000:
        raise ValueError(f"vocab ** length = {vocab ** length} responses is too many to enumerate (max 5000)")
    if not (0 < stay < 1 and 0 < stop < 1):
        raise ValueError(f"stay and stop must lie in (0, 1), got {stay}, {stop}")
    if len(score_fns) < 1 or not all(callable(f) for f in score_fns):
        raise ValueError("score_fns must be a non-empty sequence of functions tuple -> float")
    e = vocab - 1 if eos else None
    responses, tokens, mask, st, depth, states = _enumerate(vocab, length, e)
    content = [v for v in range(vocab) if v != e]
    C = len(content)
    probs = torch.zeros(len(states), vocab, dtype=DTYPE)
    first = torch.tensor([C - i for i in range(C)], dtype=DTYPE)
    for prefix, s in states.items():
        row = torch.zeros(vocab, dtype=DTYPE)
        if not prefix:
            row[content] = first / first.sum()
        else:
            row[content] = (1 - stay) / (C - 1)
            row[prefix[-1]] = stay
        if e is not None:
            row = row * (1 - stop)
            row[e] = stop
        probs[s] = row
    ref_logits = torch.log(probs)[None].expand(len(score_fns), -1, -1).clone()
    scores = torch.tensor([[float(f(tuple(v for v in y if v != e))) for y in responses] for f in score_fns],
                          dtype=DTYPE)
    if not torch.isfinite(scores).all():
        raise ValueError("score_fns must return finite numbers")
    names = "abcdefghijklmnopqrstuvwxyz"
    labels = tuple("".join("." if v == e else names[v] for v in y) for y in responses)
    return TabularProblem(ref_logits=ref_logits, scores=scores, tokens=tokens, mask=mask, states=st, depth=depth,
                          labels=labels, prompts=tuple(getattr(f, "__name__", f"x{i}") for i, f in
                                                       enumerate(score_fns)), eos=e)


# --------------------------------------------------------------------------------------------------
# exact quantities


def optimum(problem: TabularProblem, beta: float) -> torch.Tensor:
    """``pi*_beta(y | x) = pi_ref(y | x) exp(r(x, y) / beta) / Z(x)`` over whole responses: ``(P, N)``."""
    return optimal_policy(problem.ref_probs, problem.scores, beta)


def tv_distance(p, q) -> float:
    """The largest, over prompts, total-variation distance ``1/2 sum_y |p(y | x) - q(y | x)|``."""
    p, q = torch.as_tensor(p, dtype=DTYPE), torch.as_tensor(q, dtype=DTYPE)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return float(0.5 * (p - q).abs().sum(-1).max())


def exact_summary(problem: TabularProblem, probs: torch.Tensor, beta: float) -> dict:
    """Prompt-averaged exact ``reward = E r``, ``kl = KL(pi || pi_ref)`` and ``objective = reward - beta kl``."""
    probs = probs.detach()
    reward = float((probs * problem.scores).sum(-1).mean())
    kl = float(kl_divergence(probs, problem.ref_probs).mean())
    return {"reward": reward, "kl": kl, "objective": reward - beta * kl}


def frontier(problem: TabularProblem, betas) -> dict[str, np.ndarray]:
    """The reward-KL frontier: for each ``beta``, the prompt-averaged ``KL(pi*_beta || pi_ref)`` and
    ``E_{pi*_beta} r``. No policy has more reward at the same KL (the chapter's theorem)."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or not (betas > 0).all():
        raise ValueError("betas must be a 1-d array of numbers > 0")
    out = {"beta": betas, "kl": [], "reward": []}
    for b in betas:
        s = exact_summary(problem, optimum(problem, float(b)), float(b))
        out["kl"].append(s["kl"])
        out["reward"].append(s["reward"])
    return {k: np.asarray(v) for k, v in out.items()}


def _optimum_stats(problem: TabularProblem, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prompt-averaged KL and reward of ``pi*_beta`` for many ``beta`` at once (``pi*_beta`` is
    :func:`~rlhf_course.objective.optimal_policy` of the reward ``r / beta`` at temperature 1)."""
    b = torch.as_tensor(np.asarray(betas, dtype=np.float64))[:, None, None]
    pi = optimal_policy(problem.ref_probs[None], problem.scores[None] / b, 1.0)
    kl = kl_divergence(pi, problem.ref_probs[None]).mean(-1)
    reward = (pi * problem.scores[None]).sum(-1).mean(-1)
    return kl.numpy(), reward.numpy()


def _betas_for_kls(problem: TabularProblem, targets: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Vectorized bisection on ``log beta`` for ``KL(pi*_beta) = target`` (the KL decreases in ``beta``)."""
    a = np.full(len(targets), math.log(lo))
    b = np.full(len(targets), math.log(hi))
    for _ in range(60):
        m = 0.5 * (a + b)
        too_far = _optimum_stats(problem, np.exp(m))[0] > targets
        a, b = np.where(too_far, m, a), np.where(too_far, b, m)
    return np.exp(0.5 * (a + b))


def frontier_at(problem: TabularProblem, kl_values) -> np.ndarray:
    """The frontier's reward at each given prompt-averaged KL: ``E_{pi*_beta} r`` for the ``beta`` whose
    optimum has that KL (KL 0 gives the reference's reward; a KL beyond ``pi*_{1e-3}`` gives its reward)."""
    kls = np.atleast_1d(np.asarray(kl_values, dtype=np.float64))
    if kls.ndim != 1 or np.isnan(kls).any() or (kls < 0).any():
        raise ValueError("kl_values must be numbers >= 0")
    lo, hi = 1e-3, 1e6
    (k_lo, k_hi), (r_lo, r_hi) = _optimum_stats(problem, np.array([lo, hi]))
    inside = (kls > k_hi) & (kls < k_lo)
    out = np.where(kls >= k_lo, r_lo, r_hi)
    out = np.where(kls <= 0, float((problem.ref_probs * problem.scores).sum(-1).mean()), out)
    if inside.any():
        out[inside] = _optimum_stats(problem, _betas_for_kls(problem, kls[inside], lo, hi))[1]
    return out


def beta_for_kl(problem: TabularProblem, target: float, lo: float = 1e-3, hi: float = 1e3) -> float:
    """The ``beta`` whose optimum has prompt-averaged ``KL(pi*_beta || pi_ref) = target`` (bisection on
    ``log beta``: that KL decreases as ``beta`` grows)."""
    if isinstance(target, bool) or not (isinstance(target, (int, float)) and target > 0):
        raise ValueError(f"target must be a number > 0, got {target!r}")
    (k_lo, k_hi), _ = _optimum_stats(problem, np.array([lo, hi]))
    if not k_hi < target < k_lo:
        raise ValueError(f"target KL {target} is outside the range reachable with beta in [{lo}, {hi}]: "
                         f"({k_hi:.4g}, {k_lo:.4g})")
    return float(_betas_for_kls(problem, np.array([float(target)]), lo, hi)[0])


def forward_kl_optimum(problem: TabularProblem, beta: float) -> torch.Tensor:
    """The maximizer of ``E_pi r - beta KL(pi_ref || pi)`` (the *forward* KL) over whole responses.

    Stationarity gives ``pi(y) = beta pi_ref(y) / (mu - r(y))`` with ``mu > max_y r(y)`` the root of
    ``sum_y pi(y) = 1`` (found by bisection; the sum decreases in ``mu``). This is where a sampled ``k3``
    used as a loss term leads, since its expected gradient is that of the forward KL.
    """
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta must be a number > 0, got {beta!r}")
    ref, r = problem.ref_probs, problem.scores
    out = torch.empty_like(ref)
    for p in range(ref.shape[0]):
        top = float(r[p].max())
        lo, hi = top + 1e-15, top + beta + float(r[p].max() - r[p].min()) + 1.0
        for _ in range(200):
            mu = 0.5 * (lo + hi)
            lo, hi = (mu, hi) if float((beta * ref[p] / (mu - r[p])).sum()) > 1 else (lo, mu)
        pi = beta * ref[p] / (0.5 * (lo + hi) - r[p])
        out[p] = pi / pi.sum()
    return out


def logits_of(problem: TabularProblem, probs) -> torch.Tensor:
    """The tabular policy with distribution ``probs`` ``(P, N)`` over whole responses: log of
    ``pi(v | s) = pi(s, v) / pi(s)``, the probability of passing through the edge ``(s, v)`` over that of
    reaching ``s``. ``problem.probs(logits_of(problem, p))`` gives back ``p``."""
    p = torch.as_tensor(probs, dtype=DTYPE)
    if tuple(p.shape) != (problem.n_prompts, problem.n_responses):
        raise ValueError(f"probs must have shape (prompts, responses) = {(problem.n_prompts, problem.n_responses)}, "
                         f"got {tuple(p.shape)}")
    P, N, T = problem.n_prompts, problem.n_responses, problem.length
    edge = (problem.states * problem.vocab + problem.tokens).reshape(-1)  # (N * T,) edge index
    w = (p[:, :, None] * problem.mask).reshape(P, -1)
    flow = torch.zeros(P, problem.n_states * problem.vocab, dtype=DTYPE).scatter_add(1, edge.expand(P, -1), w)
    flow = flow.reshape(P, problem.n_states, problem.vocab)
    with np.errstate(divide="ignore"):
        return torch.log(flow / flow.sum(-1, keepdim=True))


def exact_values(problem: TabularProblem, probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """``V^pi(s_t) = E_pi[sum_{s >= t} r_s | x, y_<t]`` before every token of every response: ``(P, N, T)``.

    ``rewards`` ``(P, N, T)`` are per-token rewards of every enumerated response (0 on padding) and
    ``probs`` ``(P, N)`` the policy's response probabilities. Each state's value is the probability-weighted
    mean of the return-to-go over the responses passing through it.
    """
    P, N, T = rewards.shape
    m = problem.mask
    returns = torch.flip(torch.cumsum(torch.flip(rewards * m, [-1]), -1), [-1])
    w = probs[:, :, None] * m  # (P, N, T)
    idx = problem.states.expand(P, N, T).reshape(P, -1)
    num = torch.zeros(P, problem.n_states, dtype=DTYPE).scatter_add(1, idx, (w * returns).reshape(P, -1))
    den = torch.zeros(P, problem.n_states, dtype=DTYPE).scatter_add(1, idx, w.reshape(P, -1))
    v = num / den.clamp(min=1e-300)
    return v.gather(1, idx).reshape(P, N, T) * m
