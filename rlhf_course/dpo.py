"""Direct preference optimization, derived from the optimal policy (chapter 8).

From chapter 4, the maximizer of ``E[r] - beta KL(pi || pi_ref)`` satisfies, for every output ``y``,

    r(x, y) = beta log(pi*(y|x) / pi_ref(y|x)) + beta log Z(x).

Under the Bradley-Terry model a preference ``y_w > y_l`` has probability ``sigmoid(r(y_w) - r(y_l))``;
substituting the reward, ``beta log Z(x)`` cancels in the difference, and the negative log-likelihood of
the preferences becomes a loss on the policy alone:

    h(y) = log pi(y|x) - log pi_ref(y|x)                        (the implicit reward, divided by beta)
    L_DPO = -log sigmoid(beta (h(y_w) - h(y_l)))

At initialization (``pi = pi_ref``) ``h = 0`` and ``L_DPO = log 2``. For a ranking ``y_1 > y_2 > ... > y_K``
the Plackett-Luce model gives

    L_PL = -sum_{k=1}^{K-1} log( exp(beta h(y_k)) / sum_{j >= k} exp(beta h(y_j)) ),

which is ``L_DPO`` for ``K = 2``.

Two trainers on problems whose outputs can be listed (the language-model trainer is
:mod:`rlhf_course.dpo_lm`'s):

* :func:`train_toy_dpo` minimizes the population loss :func:`exact_dpo_loss` (every pair, weighted by its
  probability) on one prompt with a finite set of outputs: its minimizer is ``pi*_beta``;
* :func:`train_sampled_dpo` minimizes the loss on a finite dataset (:func:`sample_preferences`: pairs or
  rankings of reference samples, labelled by a Bradley-Terry or Plackett-Luce rater with a known reward), on
  a table of probabilities or on chapter 5's autoregressive tabular policies (``toy.TabularProblem``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_count, check_positive_scalar
from .distributions import inverse_cdf
from .preference_models import bradley_terry_prob, plackett_luce_nll

__all__ = ["dpo_loss", "plackett_luce_loss", "bradley_terry_prob", "exact_dpo_loss", "train_toy_dpo",
           "Preferences", "sample_preferences", "preference_loss", "train_sampled_dpo"]


def _check_same(*named):
    shape = None
    for name, x in named:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if torch.isnan(x).any():
            raise ValueError(f"{name} contains NaN")
        if shape is None:
            shape = x.shape
        elif x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)} like {named[0][0]}")


def dpo_loss(chosen_logp: torch.Tensor, rejected_logp: torch.Tensor, ref_chosen_logp: torch.Tensor,
             ref_rejected_logp: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """``L_DPO = mean -log sigmoid(beta ((logp_w - ref_logp_w) - (logp_l - ref_logp_l)))``.

    Arguments are sequence log-probabilities, one per preference pair (shape ``(batch,)``). Returns the
    mean loss and ``stats``: the implicit rewards' accuracy (fraction of pairs with ``h_w > h_l``) and margin.
    """
    _check_same(("chosen_logp", chosen_logp), ("rejected_logp", rejected_logp),
                ("ref_chosen_logp", ref_chosen_logp), ("ref_rejected_logp", ref_rejected_logp))
    beta = check_positive_scalar(beta, "beta")
    margin = beta * ((chosen_logp - ref_chosen_logp) - (rejected_logp - ref_rejected_logp))
    loss = -F.logsigmoid(margin).mean()
    with torch.no_grad():
        stats = {"accuracy": (margin > 0).float().mean().item(), "margin": margin.mean().item()}
    return loss, stats


def plackett_luce_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """``L_PL`` for rankings: ``logp`` and ``ref_logp`` are ``(batch, K)``, each row ordered best first."""
    _check_same(("logp", logp), ("ref_logp", ref_logp))
    if logp.dim() != 2 or logp.shape[1] < 2:
        raise ValueError(f"logp must be (batch, K) with K >= 2 ranked outputs, got shape {tuple(logp.shape)}")
    beta = check_positive_scalar(beta, "beta")
    return plackett_luce_nll(beta * (logp - ref_logp)).mean()


def exact_dpo_loss(logits: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float,
                   pair_probs: torch.Tensor | None = None) -> torch.Tensor:
    """The DPO loss in expectation over every ordered pair of a finite output set (no sampling noise).

    Pairs ``(a, b)`` are drawn with probability ``pair_probs[a, b]`` (default: ``pi_ref(a) pi_ref(b)``) and
    labelled ``a > b`` with the Bradley-Terry probability ``sigmoid(r_a - r_b)``, else ``b > a``: the loss is
    the expected ``-log sigmoid(beta (h(y_w) - h(y_l)))`` of one such comparison, so ``log 2`` at
    ``pi = pi_ref``. Its minimizer over the policy ``softmax(logits)`` is ``pi*_beta`` whenever every pair
    has positive probability. ``logits`` may carry leading batch axes (one policy per row): the result then
    has those axes.
    """
    if not all(isinstance(t, torch.Tensor) for t in (logits, ref_probs, rewards)):
        raise TypeError("logits, ref_probs and rewards must be torch tensors")
    K = logits.shape[-1] if logits.dim() else 0
    if logits.dim() < 1 or ref_probs.shape != (K,) or rewards.shape != (K,):
        raise ValueError("logits (..., K), ref_probs (K,) and rewards (K,) must have the same number K of outputs")
    beta = check_positive_scalar(beta, "beta")
    h = torch.log_softmax(logits, -1) - torch.log(ref_probs)
    w = ref_probs[:, None] * ref_probs[None, :] if pair_probs is None else pair_probs
    if w.shape != (K, K):
        raise ValueError(f"pair_probs must be ({K}, {K}), got {tuple(w.shape)}")
    p_ab = torch.sigmoid(rewards[:, None] - rewards[None, :])  # P(a preferred to b)
    log_sig = F.logsigmoid(beta * (h[..., :, None] - h[..., None, :]))  # log sigmoid of margin(a over b)
    # drawn as (a, b): labelled a > b with probability p_ab (loss -log_sig[a, b]), else b > a (-log_sig[b, a])
    per_pair = p_ab * log_sig + p_ab.transpose(0, 1) * log_sig.transpose(-1, -2)
    return -(w * per_pair).sum((-1, -2)) / w.sum()


def train_toy_dpo(ref_probs, rewards, beta: float, steps: int = 2000, lr: float = 0.5) -> torch.Tensor:
    """Minimize :func:`exact_dpo_loss` from ``pi = pi_ref`` by gradient descent; returns the trained policy.

    The book compares the result with ``rlhf_course.objective.optimal_policy(ref_probs, rewards, beta)``.
    """
    ref = torch.as_tensor(ref_probs, dtype=torch.float64)
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if bool((ref <= 0).any()):
        raise ValueError("ref_probs must be > 0 everywhere for DPO to see every pair")
    if not (isinstance(steps, int) and steps > 0):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    logits = torch.log(ref).clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        exact_dpo_loss(logits, ref, r, beta).backward()
        opt.step()
    return torch.softmax(logits.detach(), -1)


# --------------------------------------------------------------------------------------------------
# finite preference data on enumerable problems


@dataclass(frozen=True)
class Preferences:
    """A finite preference dataset on a problem with enumerable outputs: comparison ``i`` is about prompt
    ``prompt[i]`` and ranks the outputs ``ranking[i]`` (indices into the prompt's outputs), best first.

    With ``k = 2`` outputs per comparison, ``chosen = ranking[:, 0]`` and ``rejected = ranking[:, 1]``.
    """

    prompt: np.ndarray   # (n,) int64
    ranking: np.ndarray  # (n, k) int64

    def __post_init__(self):
        p, r = np.asarray(self.prompt), np.asarray(self.ranking)
        if p.ndim != 1 or r.ndim != 2 or r.shape[0] != p.shape[0] or r.shape[1] < 2:
            raise ValueError(f"prompt must be (n,) and ranking (n, k) with k >= 2, got shapes {p.shape} and {r.shape}")
        if not (np.issubdtype(p.dtype, np.integer) and np.issubdtype(r.dtype, np.integer)):
            raise TypeError("prompt and ranking must hold integer indices")
        if p.size and (p.min() < 0 or r.min() < 0):
            raise ValueError("prompt and ranking indices must be >= 0")

    def __len__(self) -> int:
        return int(self.prompt.shape[0])

    @property
    def k(self) -> int:
        return int(self.ranking.shape[1])

    @property
    def chosen(self) -> np.ndarray:
        return self.ranking[:, 0]

    @property
    def rejected(self) -> np.ndarray:
        if self.k != 2:
            raise ValueError(f"rejected is defined for pairs (k = 2); these comparisons rank k = {self.k} outputs")
        return self.ranking[:, 1]

    def subset(self, n: int) -> "Preferences":
        """The first ``n`` comparisons (datasets of growing size drawn from one stream are nested)."""
        return Preferences(self.prompt[:n], self.ranking[:n])


def _as_table64(x, name: str) -> torch.Tensor:
    t = x.detach().to(torch.float64).cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(
        np.asarray(x, dtype=np.float64))
    if t.dim() not in (1, 2):
        raise ValueError(f"{name} must be (K,) or (prompts, K), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    return t if t.dim() == 2 else t[None]


def sample_preferences(ref_probs, rewards, n: int, k: int = 2, seed: int = 0, scale: float = 1.0) -> Preferences:
    """``n`` comparisons per prompt: ``k`` outputs drawn independently from ``pi_ref(. | x)``, ranked by a
    Plackett-Luce rater with worths ``exp(scale r(x, y))`` (for ``k = 2``, Bradley-Terry:
    ``P(a > b) = sigmoid(scale (r(a) - r(b)))``).

    ``ref_probs`` and ``rewards`` are ``(K,)`` or ``(prompts, K)`` (e.g. a ``toy.TabularProblem``'s
    ``ref_probs`` and ``scores``). The ranking is drawn with the Gumbel trick: sort ``scale r + G`` with
    independent standard Gumbel noise ``G``, largest first, which gives exactly the Plackett-Luce
    probabilities. The two draws of a pair can be the same output; such a pair carries no information
    (its DPO loss is ``log 2`` whatever the policy). Comparisons are ordered prompt-major within each
    draw round, so :meth:`Preferences.subset` of a larger dataset is a smaller one from the same seed.
    """
    ref = _as_table64(ref_probs, "ref_probs").numpy()
    r = _as_table64(rewards, "rewards").numpy()
    if ref.shape != r.shape:
        raise ValueError(f"ref_probs and rewards must have the same shape, got {ref.shape} and {r.shape}")
    if (ref < 0).any() or not np.allclose(ref.sum(1), 1.0, atol=1e-9):
        raise ValueError("every row of ref_probs must be >= 0 and sum to 1")
    n = check_count(n, "n")
    k = check_count(k, "k", minimum=2)
    scale = check_positive_scalar(scale, "scale")
    P = ref.shape[0]
    rng = np.random.default_rng(seed)
    draws = inverse_cdf(ref[None, :, None, :], rng.random((n, P, k)))  # (n, P, k)
    noisy = scale * r[np.arange(P)[None, :, None], draws] + rng.gumbel(size=(n, P, k))
    order = np.argsort(-noisy, axis=-1, kind="stable")
    ranking = np.take_along_axis(draws, order, axis=-1)
    prompt = np.broadcast_to(np.arange(P)[None, :], (n, P))
    return Preferences(prompt.reshape(-1).astype(np.int64), ranking.reshape(n * P, k).astype(np.int64))


def _policy_logp(model, logits: torch.Tensor) -> torch.Tensor:
    """``log pi(y | x)`` of every output, ``(P, N)``: a softmax over whole outputs, or per-token tables."""
    if model is None:
        return torch.log_softmax(logits, -1)
    return model.token_logprobs(logits).sum(-1)


def preference_loss(logp: torch.Tensor, ref_logp: torch.Tensor, prefs: Preferences, beta: float) -> torch.Tensor:
    """The DPO (``k = 2``) or Plackett-Luce loss of a policy on a finite dataset, averaged over comparisons.

    ``logp`` and ``ref_logp`` are ``(prompts, N)`` log-probabilities of every output under the policy and the
    reference. Identical comparisons are grouped and weighted by their count, so the cost does not grow with
    the dataset's size.
    """
    if not isinstance(logp, torch.Tensor) or not isinstance(ref_logp, torch.Tensor):
        raise TypeError("logp and ref_logp must be torch tensors")
    if logp.dim() != 2 or logp.shape != ref_logp.shape:
        raise ValueError(f"logp and ref_logp must be (prompts, N) of the same shape, got {tuple(logp.shape)} "
                         f"and {tuple(ref_logp.shape)}")
    if not isinstance(prefs, Preferences):
        raise TypeError(f"prefs must be Preferences (see sample_preferences), got {type(prefs).__name__}")
    if len(prefs) == 0:
        raise ValueError("prefs is empty")
    beta = check_positive_scalar(beta, "beta")
    if prefs.prompt.max() >= logp.shape[0] or prefs.ranking.max() >= logp.shape[1]:
        raise ValueError(f"prefs index prompts or outputs beyond logp's shape {tuple(logp.shape)}")
    return _grouped_loss(logp, ref_logp, _group(prefs), beta)


def _group(prefs: Preferences) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct comparisons and their counts: ``(prompt (U, 1), ranking (U, k), count (U,))``."""
    rows, counts = np.unique(np.concatenate([prefs.prompt[:, None], prefs.ranking], 1), axis=0, return_counts=True)
    return torch.as_tensor(rows[:, :1]), torch.as_tensor(rows[:, 1:]), torch.as_tensor(counts, dtype=torch.float64)


def _grouped_loss(logp, ref_logp, groups, beta: float) -> torch.Tensor:
    p, y, w = groups
    s = beta * (logp[p, y] - ref_logp[p, y])
    w = w.to(s.dtype)
    return (w * plackett_luce_nll(s)).sum() / w.sum()


def train_sampled_dpo(ref, prefs: Preferences, beta: float, steps: int = 1000, lr: float = 0.1) -> torch.Tensor:
    """Minimize :func:`preference_loss` on a finite dataset by full-batch Adam, from ``pi = pi_ref``.

    ``ref`` is either a table of reference probabilities ``(K,)`` or ``(prompts, K)``, and the policy is then a
    softmax over whole outputs with one logit per output; or a ``toy.TabularProblem``, and the policy is
    autoregressive, one table of next-token logits per prefix, as in chapter 5. Returns the trained policy
    over whole outputs, ``(prompts, N)`` (``(K,)`` for a 1-D table), float64.

    An output that appears in no comparison gets no gradient of its own (with one logit per output it keeps
    its initial logit); a comparison won every time pushes its margin without bound, which a fixed number of
    steps keeps finite. With data from ``sample_preferences`` both fade as ``n`` grows, and the result
    approaches ``pi*_beta`` of the rater's reward.
    """
    beta = check_positive_scalar(beta, "beta")
    steps = check_count(steps, "steps")
    lr = check_positive_scalar(lr, "lr")
    if hasattr(ref, "token_logprobs") and hasattr(ref, "ref_logits"):
        model, flat = ref, False
        logits = ref.ref_logits.detach().clone().to(torch.float64)
        ref_logp = ref.ref_token_logprobs.sum(-1).detach().to(torch.float64)
    else:
        table = _as_table64(ref, "ref")
        if bool((table <= 0).any()) or not torch.allclose(table.sum(1), torch.ones(table.shape[0], dtype=torch.float64),
                                                          atol=1e-9):
            raise ValueError("ref must be > 0 everywhere and each row must sum to 1")
        model, flat = None, (ref.dim() if isinstance(ref, torch.Tensor) else np.ndim(ref)) == 1
        logits = torch.log(table)
        ref_logp = torch.log(table)
    preference_loss(ref_logp, ref_logp, prefs, beta)  # validates prefs against the problem's shape
    groups = _group(prefs)  # once: each step then costs the same whatever the dataset's size
    logits.requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        _grouped_loss(_policy_logp(model, logits), ref_logp, groups, beta).backward()
        opt.step()
    with torch.no_grad():
        probs = torch.exp(_policy_logp(model, logits))
    return probs[0] if flat else probs
