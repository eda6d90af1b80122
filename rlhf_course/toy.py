"""Enumerable problems and their trainers (chapter 5): every algorithm held against the exact optimum.

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

The trainers (:func:`train`, configured by :class:`Config`) are the chapter's algorithms:

* ``method="reinforce"``: one gradient step per batch on ``-mean_t A_t logp_t``; the KL either folded into
  the reward (``kl="reward"``: per token, ``r_t = -beta log_ratio_t + [t = T] r``, or once per sequence)
  or added as a separate loss term (``kl="loss"``, with the exact KL or a sampled estimator ``k1/k2/k3``);
  baselines ``"none"``, ``"loo"`` (leave-one-out mean), ``"exact"`` (the true value ``V^pi``, enumerated);
* ``method="a2c"``: actor-critic, one gradient step per batch on ``L_pi + c_V L_V`` with a tabular critic
  ``V(s_t)`` trained jointly with the policy, advantages by GAE;
* ``method="ppo"``: several epochs of minibatch steps per batch on PPO's clipped surrogate
  (``surrogate="clip"``), the penalty-based trust region ``J - kappa D(theta, theta_old)``
  (``"penalty"``), or the bare surrogate (``"plain"``, no bound at all), plus the clipped value loss.

Any of them can steer ``beta`` with Ziegler et al.'s adaptive controller (``target_kl``). The pieces
(per-token rewards, GAE, clipped losses, controllers) are :mod:`rlhf_course.rl`'s, the same functions the
language-model run of chapter 6 uses. With ``estimate="exact"`` every batch is the whole enumeration,
each response weighted by its probability under the sampling policy: the update is then the *expected*
update of the algorithm, free of sampling noise (used to draw clean paths). Everything is float64 on the CPU.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from . import rl
from .kl import k1, k2, k2_from_log_ratio, k3, kl_divergence
from .objective import optimal_policy, rlhf_objective

__all__ = [
    "TabularProblem", "make_bandit", "make_sequences", "Config", "Run", "train", "optimum", "tv_distance",
    "exact_summary",
    "frontier", "frontier_at", "beta_for_kl", "forward_kl_optimum", "exact_objective_gradient", "gradient_estimates",
    "exact_values", "logits_of", "FAST", "FAST_ADAPTIVE", "METHODS", "SURROGATES", "BASELINES", "KL_ESTIMATORS",
]

DTYPE = torch.float64
METHODS = ("reinforce", "a2c", "ppo")
SURROGATES = ("clip", "penalty", "plain")
BASELINES = ("none", "loo", "exact", "learned")
KL_ESTIMATORS = ("exact", "k1", "k2", "k3")


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


# --------------------------------------------------------------------------------------------------
# the trainers


@dataclass(frozen=True)
class Config:
    """One training run. Invalid combinations raise ``ValueError`` naming the field.

    General: ``method`` (``"reinforce"``, ``"a2c"``, ``"ppo"``), ``beta`` (the KL coefficient; the
    initial one when adaptive), ``iterations`` batches, ``optimizer`` (``"adam"``, or ``"sgd"`` for plain
    gradient steps) with learning rate ``lr`` (linearly decayed to 0 when ``lr_decay``), ``samples_per_prompt`` responses per prompt per batch, ``estimate``
    (``"sample"``, or ``"exact"`` for the expected update over the whole enumeration), ``seed``.

    The KL to the reference: ``kl="reward"`` folds ``-beta log_ratio`` into the reward, per token
    (``kl_per_token=True``, ``r_t = -beta log_ratio_t + [t = T] r``) or once per response
    (``r_T = r - beta sum_t log_ratio_t``); ``kl="loss"`` (REINFORCE only) adds ``beta D`` to the loss,
    ``D`` by ``kl_estimator``: ``"exact"`` (the enumerated KL) or a sampled ``"k1"``, ``"k2"``, ``"k3"``
    of the response's log-ratio. ``target_kl`` (with ``kl_horizon``) makes ``beta`` adaptive.

    Advantages: ``baseline`` (default ``"loo"`` for REINFORCE, ``"learned"`` for A2C and PPO; ``"exact"``
    uses ``V^pi`` itself), GAE with ``gamma`` and ``lam`` where there are values, critic weight ``vf_coef``.

    PPO: ``surrogate`` (``"clip"``, ``"penalty"``, ``"plain"``), ``clip_eps``, ``trust_coef`` (``kappa`` of
    ``J - kappa D(theta, theta_old)``), ``vf_clip_eps``, ``ppo_epochs`` and ``minibatches`` (PPO only; defaults 4
    and 4, or 1 minibatch with ``estimate="exact"``).
    """

    method: str = "ppo"
    beta: float = 0.5
    iterations: int = 200
    lr: float = 0.1
    lr_decay: bool = True
    optimizer: str = "adam"
    samples_per_prompt: int = 512
    estimate: str = "sample"
    seed: int = 0
    kl: str = "reward"
    kl_per_token: bool = True
    kl_estimator: str = "exact"
    target_kl: float | None = None
    kl_horizon: float = 10_000.0
    baseline: str | None = None
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.5
    surrogate: str = "clip"
    clip_eps: float = 0.2
    trust_coef: float = 1.0
    vf_clip_eps: float = 0.5
    ppo_epochs: int | None = None
    minibatches: int | None = None

    def __post_init__(self):
        def number(name, lo=None, hi=None, lo_open=True, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"Config.{name} must be a finite number, got {v!r}")
            if lo is not None and (v <= lo if lo_open else v < lo):
                raise ValueError(f"Config.{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
            if hi is not None and v > hi:
                raise ValueError(f"Config.{name} must be <= {hi}, got {v!r}")

        def integer(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"Config.{name} must be an int >= {lo}, got {v!r}")

        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"Config.{name} must be one of {options}, got {getattr(self, name)!r}")

        choice("method", METHODS)
        choice("estimate", ("sample", "exact"))
        choice("optimizer", ("adam", "sgd"))
        choice("kl", ("reward", "loss"))
        choice("kl_estimator", KL_ESTIMATORS)
        choice("surrogate", SURROGATES)
        if self.baseline is not None:
            choice("baseline", BASELINES)
        number("beta", 0, lo_open=False)
        number("lr", 0)
        number("gamma", 0, 1, lo_open=False)
        number("lam", 0, 1, lo_open=False)
        number("vf_coef", 0)
        number("clip_eps", 0, 0.999)
        number("trust_coef", 0, lo_open=False)
        number("vf_clip_eps", 0)
        number("target_kl", 0, allow_none=True)
        number("kl_horizon", 0)
        integer("iterations", 1)
        integer("samples_per_prompt", 2)
        integer("seed", 0)
        for name in ("ppo_epochs", "minibatches"):
            if getattr(self, name) is not None:
                integer(name, 1)
                if self.method != "ppo" and getattr(self, name) != 1:
                    raise ValueError(f"Config.{name} is PPO's; method={self.method!r} takes one step per batch")
        if self.target_kl is not None and self.beta <= 0:
            raise ValueError("Config.beta must be > 0 when target_kl makes it adaptive (it moves multiplicatively)")
        b = self.resolved_baseline
        if self.method == "reinforce" and b == "learned":
            raise ValueError("Config.baseline='learned' is actor-critic: use method='a2c' (or 'ppo')")
        if self.method != "reinforce" and b not in ("learned", "exact"):
            raise ValueError(f"Config.baseline for method={self.method!r} must be 'learned' (the critic) or "
                             f"'exact' (V^pi enumerated), got {b!r}")
        if self.kl == "loss" and self.method != "reinforce":
            raise ValueError("Config.kl='loss' (the KL as a separate loss term) is offered for method='reinforce'")
        if self.estimate == "exact":
            if b in ("loo", "learned"):
                raise ValueError(f"Config.estimate='exact' takes the expectation over all responses: "
                                 f"baseline must be 'none' or 'exact', got {b!r}")
            if self.minibatches not in (None, 1):
                raise ValueError("Config.estimate='exact' uses the whole enumeration as one batch: minibatches=1")

    @property
    def n_ppo_epochs(self) -> int:
        """PPO: ``ppo_epochs`` (default 4); the other methods take one step per batch."""
        return (self.ppo_epochs or 4) if self.method == "ppo" else 1

    @property
    def n_minibatches(self) -> int:
        """PPO: ``minibatches`` (default 4, or 1 with ``estimate="exact"``); otherwise 1."""
        if self.method != "ppo":
            return 1
        return self.minibatches or (1 if self.estimate == "exact" else 4)

    @property
    def resolved_baseline(self) -> str:
        if self.baseline is not None:
            return self.baseline
        return "loo" if self.method == "reinforce" else "learned"


FAST: dict[str, dict] = {
    "REINFORCE, KL in reward (per token)": dict(method="reinforce", iterations=300, lr=0.05),
    "REINFORCE, KL in reward (per response)": dict(method="reinforce", kl_per_token=False, iterations=150),
    "REINFORCE, KL as loss (exact KL)": dict(method="reinforce", kl="loss", iterations=300, lr=0.05,
                                             samples_per_prompt=1024),
    "REINFORCE, KL as loss (k2)": dict(method="reinforce", kl="loss", kl_estimator="k2", iterations=300, lr=0.05),
    "A2C": dict(method="a2c", iterations=150),
    "PPO, clipped surrogate": dict(method="ppo", iterations=50, ppo_epochs=2, minibatches=2),
    "PPO, penalty J - kappa D": dict(method="ppo", surrogate="penalty", iterations=50, ppo_epochs=2, minibatches=2),
}
"""The fast settings of every method, shared by the chapter and the tests: with them each method ends
within total-variation distance 0.01 of ``pi*_beta`` on both default problems, for ``beta`` in
``(0.5, 1, 2)``, from seed 0, in about a second on one CPU core."""

FAST_ADAPTIVE: dict[str, dict] = {
    "REINFORCE, KL in reward (per response)": dict(method="reinforce", kl_per_token=False, iterations=500,
                                                   kl_horizon=50_000.0),
    "PPO, clipped surrogate": dict(method="ppo", iterations=250, ppo_epochs=2, minibatches=2, kl_horizon=25_000.0),
}
"""Fast settings for runs whose ``beta`` follows the adaptive controller (add ``target_kl``)."""


@dataclass
class Run:
    """A training run's path: one entry per iteration (index 0 is the initial policy).

    ``probs`` ``(iterations + 1, P, N)`` the policy over whole responses; ``reward``, ``kl``, ``objective``
    (with the run's current ``beta``), exact and averaged over prompts; ``beta``; per-iteration
    diagnostics in ``stats``: ``clipfrac`` and ``approx_kl`` (PPO's, averaged over the iteration's steps;
    with ``estimate="exact"`` they count every enumerated token alike), ``observed_kl`` (the batch's KL that
    the controller saw), ``step_kl`` (the exact ``KL(pi_old || pi_new)`` of the update, largest over prompts)
    and ``value_error`` (the critic's ``E_pi sum_t |V(s_t) - V^pi(s_t)|``, largest over prompts).
    """

    config: Config
    probs: np.ndarray
    reward: np.ndarray
    kl: np.ndarray
    objective: np.ndarray
    beta: np.ndarray
    stats: dict = field(default_factory=dict)
    logits: torch.Tensor | None = None

    @property
    def final(self) -> np.ndarray:
        return self.probs[-1]

    def tv_to(self, target) -> np.ndarray:
        """Per-iteration total-variation distance (largest over prompts) to ``target`` ``(P, N)``."""
        target = np.asarray(target, dtype=np.float64)
        return 0.5 * np.abs(self.probs - target[None]).sum(-1).max(-1)


@dataclass
class _Batch:
    prompt: torch.Tensor   # (B,) long
    seq: torch.Tensor      # (B,) long
    weight: torch.Tensor   # (B,) mean 1: 1 when sampled, N pi_old(y|x) when enumerated
    mask: torch.Tensor
    states: torch.Tensor
    score: torch.Tensor
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    old_values: torch.Tensor | None = None

    def rows(self, idx: torch.Tensor) -> "_Batch":
        return _Batch(**{k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()})


def _make_batch(problem: TabularProblem, probs: torch.Tensor, tok_logp: torch.Tensor, cfg: Config,
                gen: torch.Generator) -> _Batch:
    P, N = probs.shape
    if cfg.estimate == "exact":
        prompt = torch.arange(P).repeat_interleave(N)
        seq = torch.arange(N).repeat(P)
        weight = N * probs[prompt, seq]
    else:  # every prompt gets samples_per_prompt responses drawn from pi_old(. | x)
        n = cfg.samples_per_prompt
        prompt = torch.arange(P).repeat_interleave(n)
        seq = torch.multinomial(probs, n, replacement=True, generator=gen).reshape(-1)
        weight = torch.ones(P * n, dtype=DTYPE)
    return _Batch(prompt=prompt, seq=seq, weight=weight, mask=problem.mask[seq], states=problem.states[seq],
                  score=problem.scores[prompt, seq], old_logp=tok_logp[prompt, seq],
                  ref_logp=problem.ref_token_logprobs[prompt, seq])


def _rewards(cfg: Config, beta: float, score, logp, ref_logp, mask) -> torch.Tensor:
    """Per-token rewards of the run's kind (rows = responses)."""
    if cfg.kl == "loss":  # the KL is not in the reward: only the score, at the last token
        return rl.kl_penalized_rewards(score, logp, ref_logp, mask, 0.0)[0]
    if cfg.kl_per_token:
        return rl.kl_penalized_rewards(score, logp, ref_logp, mask, beta)[0]
    seq_ratio = ((logp - ref_logp) * mask).sum(1)
    return rl.kl_penalized_rewards(score - beta * seq_ratio, logp, ref_logp, mask, 0.0)[0]


def _loo_baseline(returns: torch.Tensor, mask: torch.Tensor, n_prompts: int) -> torch.Tensor:
    """Leave-one-out mean of the return at the same position over the *other* responses to the same prompt."""
    B, T = returns.shape
    G = (returns * mask).reshape(n_prompts, -1, T)
    m = mask.reshape(n_prompts, -1, T)
    others = (G.sum(1, keepdim=True) - G) / (m.sum(1, keepdim=True) - m).clamp(min=1)
    return (others * m).reshape(B, T)


def _wmean(x: torch.Tensor, batch: _Batch) -> torch.Tensor:
    """Mean over the batch's real tokens, each response weighted by ``batch.weight`` (all 1 when sampled,
    where this is ``rl.masked_mean``)."""
    w = batch.weight[:, None].expand_as(batch.mask)
    return rl.masked_sum(x * w, batch.mask) / rl.masked_sum(w, batch.mask)


def _advantages(problem: TabularProblem, cfg: Config, beta: float, batch: _Batch, probs: torch.Tensor,
                tok_logp: torch.Tensor, value_table: torch.Tensor | None) -> None:
    """Fill in the batch's advantages, returns and (for critics) old values."""
    rewards = _rewards(cfg, beta, batch.score, batch.old_logp, batch.ref_logp, batch.mask)
    b = cfg.resolved_baseline
    if b in ("none", "loo"):
        returns, _ = rl.gae(rewards, torch.zeros_like(rewards), batch.mask, cfg.gamma, 1.0)
        adv = returns if b == "none" else returns - _loo_baseline(returns, batch.mask, problem.n_prompts)
        batch.advantages, batch.returns = adv * batch.mask, returns
        return
    if b == "exact":
        P, N, T = tok_logp.shape
        flat = _rewards(cfg, beta, problem.scores.reshape(-1), tok_logp.reshape(P * N, T),
                        problem.ref_token_logprobs.reshape(P * N, T), problem.mask.repeat(P, 1))
        values = exact_values(problem, probs, flat.reshape(P, N, T))[batch.prompt, batch.seq]
    else:
        values = value_table.detach()[batch.prompt[:, None], batch.states] * batch.mask
    batch.advantages, batch.returns = rl.gae(rewards, values, batch.mask, cfg.gamma, cfg.lam)
    batch.old_values = values


def _kl_loss_term(problem: TabularProblem, cfg: Config, logits, logp, batch: _Batch) -> torch.Tensor:
    """``D`` of ``kl="loss"``, on the same per-token scale as the policy loss: (responses / tokens) x
    the per-response mean of the estimator."""
    w = batch.weight
    per_token = (w.sum() / (w * batch.mask.sum(1)).sum())
    if cfg.kl_estimator == "exact":
        return per_token * kl_divergence(problem.probs(logits), problem.ref_probs).mean()
    seq_logp = (logp * batch.mask).sum(1)
    seq_ref = (batch.ref_logp * batch.mask).sum(1)
    est = {"k1": k1, "k2": k2, "k3": k3}[cfg.kl_estimator](seq_logp, seq_ref)
    return per_token * (w * est).sum() / w.sum()


def _policy_loss(cfg: Config, batch: _Batch, logp: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The policy's loss on a (mini)batch given the current ``logp`` of its tokens."""
    adv = batch.advantages
    if cfg.method in ("reinforce", "a2c"):  # the score-function surrogate: grad = -E[A grad log pi]
        return -_wmean(adv * logp, batch), {}
    if cfg.surrogate == "clip":
        # rl.clipped_policy_loss takes a plain token mean; a positive weight per response scales its
        # term (max(-cA rho, -cA clip(rho)) = c max(-A rho, -A clip(rho)) for c > 0), so weighting the
        # advantages gives the weighted mean. Sampled batches have weight 1 and pass through unchanged.
        w = batch.weight[:, None]
        scale = batch.mask.sum() / (w * batch.mask).sum()
        return rl.clipped_policy_loss(logp, batch.old_logp, adv * w * scale, batch.mask, cfg.clip_eps)
    ratio = torch.exp(logp - batch.old_logp)
    loss = -_wmean(adv * ratio, batch)
    stats = {"approx_kl": float(_wmean(k2_from_log_ratio(logp - batch.old_logp), batch).detach())}
    if cfg.surrogate == "penalty":
        # D(theta, theta_old): KL(pi_old || pi_theta) per token, by k3 on tokens drawn from pi_old
        # (log r = logp - old_logp), which is unbiased and never negative.
        d = k3(batch.old_logp * batch.mask, logp * batch.mask)
        loss = loss + cfg.trust_coef * _wmean(d, batch)
    return loss, stats


def _value_loss(cfg: Config, batch: _Batch, values: torch.Tensor) -> torch.Tensor:
    if cfg.method == "a2c":
        return 0.5 * _wmean((values - batch.returns) ** 2, batch)
    return rl.clipped_value_loss(values, batch.old_values, batch.returns, batch.mask, cfg.vf_clip_eps)[0]


def train(problem: TabularProblem, config: Config | None = None, init_logits: torch.Tensor | None = None,
          progress: bool = False, **overrides) -> Run:
    """Train a tabular policy on ``problem`` (from the reference, or ``init_logits``) and return its path.

    ``train(problem, Config(...))`` or ``train(problem, method="ppo", beta=0.5, ...)``: keyword arguments
    override fields of ``config``. Each iteration: draw a batch from the current policy ``pi_old`` (or
    enumerate it), compute per-token rewards, advantages and returns, update, and let the KL controller
    see the batch's KL. The returned :class:`Run` records the exact distribution and its reward and KL
    after every iteration.
    """
    if not isinstance(problem, TabularProblem):
        raise TypeError(f"problem must be a TabularProblem (make_bandit / make_sequences), got "
                        f"{type(problem).__name__}")
    cfg = Config(**{**(asdict(config) if config is not None else {}), **overrides})
    gen = torch.Generator().manual_seed(cfg.seed)
    logits = (problem.ref_logits if init_logits is None else init_logits).detach().clone().to(DTYPE)
    _check_logits(problem, logits)
    logits.requires_grad_(True)
    params = [logits]
    value_table = None
    if cfg.resolved_baseline == "learned":
        value_table = torch.zeros(problem.n_prompts, problem.n_states, dtype=DTYPE, requires_grad=True)
        params.append(value_table)  # joint optimization: one optimizer, one loss L_pi + c_V L_V
    opt = torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam" else torch.optim.SGD(params, lr=cfg.lr)
    steps_per_iter = cfg.n_ppo_epochs * cfg.n_minibatches
    total = cfg.iterations * steps_per_iter
    sched = torch.optim.lr_scheduler.LambdaLR(opt, (lambda k: 1.0 - k / total) if cfg.lr_decay else (lambda k: 1.0))
    ctl = (rl.AdaptiveKLController(cfg.beta, cfg.target_kl, cfg.kl_horizon) if cfg.target_kl is not None
           else rl.FixedKLController(cfg.beta))
    n_responses = cfg.samples_per_prompt * problem.n_prompts
    if cfg.target_kl is not None and 0.2 * n_responses / cfg.kl_horizon >= 1:
        raise ValueError(f"Config.kl_horizon = {cfg.kl_horizon:g} is too short for {n_responses} responses per "
                         f"batch: beta's factor 1 - 0.2 n / horizon must stay > 0 (take horizon > {5 * n_responses})")
    history: dict[str, list] = {k: [] for k in ("probs", "reward", "kl", "objective", "beta")}
    stats: dict[str, list] = {k: [] for k in ("clipfrac", "approx_kl", "observed_kl", "step_kl", "value_error")}

    def record(probs, beta):
        s = exact_summary(problem, probs, beta)
        history["probs"].append(probs.detach().numpy().copy())
        for k in ("reward", "kl", "objective"):
            history[k].append(s[k])
        history["beta"].append(beta)

    with torch.no_grad():
        record(problem.probs(logits), ctl.beta)
    iterator = range(cfg.iterations)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"{cfg.method}", leave=False)
    for _ in iterator:
        beta = ctl.beta
        with torch.no_grad():
            tok_logp = problem.token_logprobs(logits)
            probs = torch.exp(tok_logp.sum(-1))
            batch = _make_batch(problem, probs, tok_logp, cfg, gen)
            _advantages(problem, cfg, beta, batch, probs, tok_logp, value_table)
        it_stats: dict[str, list] = {"clipfrac": [], "approx_kl": []}
        for _epoch in range(cfg.n_ppo_epochs):
            order = (torch.randperm(len(batch.seq), generator=gen) if cfg.n_minibatches > 1
                     else torch.arange(len(batch.seq)))
            for idx in order.chunk(cfg.n_minibatches):
                mb = batch.rows(idx)
                logp = problem.token_logprobs(logits)[mb.prompt, mb.seq]
                loss, st = _policy_loss(cfg, mb, logp)
                for k, v in st.items():
                    it_stats.setdefault(k, []).append(v)
                if cfg.kl == "loss":
                    loss = loss + beta * _kl_loss_term(problem, cfg, logits, logp, mb)
                if value_table is not None:
                    values = value_table[mb.prompt[:, None], mb.states] * mb.mask
                    loss = loss + cfg.vf_coef * _value_loss(cfg, mb, values)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        with torch.no_grad():
            new_probs = problem.probs(logits)
            if cfg.estimate == "exact":
                observed = float(kl_divergence(probs, problem.ref_probs).mean())
            else:
                observed = float(((batch.old_logp - batch.ref_logp) * batch.mask).sum(1).mean())
            stats["observed_kl"].append(observed)
            stats["step_kl"].append(float(kl_divergence(probs, new_probs).max()))
            for k in ("clipfrac", "approx_kl"):
                stats[k].append(float(np.mean(it_stats[k])) if it_stats.get(k) else float("nan"))
            if value_table is not None:
                P, N, T = tok_logp.shape
                flat = _rewards(cfg, beta, problem.scores.reshape(-1), tok_logp.reshape(P * N, T),
                                problem.ref_token_logprobs.reshape(P * N, T), problem.mask.repeat(P, 1))
                true_v = exact_values(problem, probs, flat.reshape(P, N, T))
                learned = value_table[:, problem.states] * problem.mask
                err = ((learned - true_v).abs() * probs[:, :, None]).sum((1, 2)).max()
                stats["value_error"].append(float(err))
            else:
                stats["value_error"].append(float("nan"))
            # n = responses per batch (the batch an exact update stands for, when enumerated)
            new_beta = ctl.update(observed, n_responses)
            record(new_probs, new_beta)
    return Run(config=cfg, probs=np.stack(history["probs"]), reward=np.asarray(history["reward"]),
               kl=np.asarray(history["kl"]), objective=np.asarray(history["objective"]),
               beta=np.asarray(history["beta"]), stats={k: np.asarray(v) for k, v in stats.items()},
               logits=logits.detach().clone())


# --------------------------------------------------------------------------------------------------
# gradients, for the chapter's estimator comparisons


def exact_objective_gradient(problem: TabularProblem, logits: torch.Tensor, beta: float) -> torch.Tensor:
    """``grad_theta J`` by automatic differentiation of the enumerated objective
    ``J = mean_x [sum_y pi(y|x) r(x, y) - beta KL(pi(.|x) || pi_ref(.|x))]``; shape of ``logits``."""
    _check_logits(problem, logits)
    theta = logits.detach().clone().to(DTYPE).requires_grad_(True)
    j = rlhf_objective(problem.probs(theta), problem.ref_probs, problem.scores, beta).mean()
    (g,) = torch.autograd.grad(j, theta)
    return g


def gradient_estimates(problem: TabularProblem, logits: torch.Tensor, config: Config | None = None,
                       repeats: int = 100, **overrides) -> torch.Tensor:
    """``repeats`` independent estimates of the ascent direction of a REINFORCE / A2C update at ``logits``:
    ``-grad`` of the run's loss on one batch, rescaled from the per-token loss to the per-response
    gradient so that it is comparable with :func:`exact_objective_gradient`. Shape ``(repeats, *logits.shape)``.

    With an unbiased estimator their mean approaches ``grad J``; their spread is the estimator's noise.
    """
    cfg = Config(**{**(asdict(config) if config is not None else {}), **overrides})
    if cfg.method != "reinforce":
        raise ValueError("gradient_estimates compares REINFORCE estimators: method must be 'reinforce'")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    _check_logits(problem, logits)
    gen = torch.Generator().manual_seed(cfg.seed)
    theta = logits.detach().clone().to(DTYPE).requires_grad_(True)
    out = []
    for _ in range(repeats):
        with torch.no_grad():
            tok_logp = problem.token_logprobs(theta)
            probs = torch.exp(tok_logp.sum(-1))
            batch = _make_batch(problem, probs, tok_logp, cfg, gen)
            _advantages(problem, cfg, cfg.beta, batch, probs, tok_logp, None)
        logp = problem.token_logprobs(theta)[batch.prompt, batch.seq]
        loss, _ = _policy_loss(cfg, batch, logp)
        if cfg.kl == "loss":
            loss = loss + cfg.beta * _kl_loss_term(problem, cfg, theta, logp, batch)
        (g,) = torch.autograd.grad(loss, theta)
        # the loss is a mean over tokens; x (mean response length) gives the per-response mean, grad J
        w = batch.weight
        mean_len = float((w * batch.mask.sum(1)).sum() / w.sum())
        out.append(-g * mean_len)
    return torch.stack(out)
