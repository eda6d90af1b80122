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

Three trainers, from the exact to the real:

* :func:`train_toy_dpo` minimizes the population loss :func:`exact_dpo_loss` (every pair, weighted by its
  probability) on one prompt with a finite set of outputs: its minimizer is ``pi*_beta``;
* :func:`train_sampled_dpo` minimizes the loss on a finite dataset (:func:`sample_preferences`: pairs or
  rankings of reference samples, labelled by a Bradley-Terry or Plackett-Luce rater with a known reward), on
  a table of probabilities or on chapter 5's autoregressive tabular policies (``toy.TabularProblem``);
* :func:`train_lm_dpo` trains chapter 6's tiny GPT on pairs of its reference model's responses labelled by
  the gold reward (or the proxy reward model), with :func:`evaluate_lm_policy` measuring gold reward and KL
  exactly as for PPO. ``LM_FAST`` is the tests' setting, ``LM_CHAPTER`` the chapter's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_positive_scalar
from .distributions import inverse_cdf
from .preference_models import bradley_terry_prob, plackett_luce_nll

__all__ = ["dpo_loss", "plackett_luce_loss", "bradley_terry_prob", "exact_dpo_loss", "train_toy_dpo",
           "Preferences", "sample_preferences", "preference_loss", "train_sampled_dpo",
           "LMDPOConfig", "LM_CHAPTER", "LM_FAST", "LMPreferences", "make_lm_preferences", "lm_sequence_logprobs",
           "evaluate_lm_policy", "evaluate_lm_preferences", "LMDPORun", "train_lm_dpo"]


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


def _check_count(n, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


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
    n = _check_count(n, "n")
    k = _check_count(k, "k", minimum=2)
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
    steps = _check_count(steps, "steps")
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


# --------------------------------------------------------------------------------------------------
# DPO for the tiny language model of chapter 6


@dataclass(frozen=True)
class LMDPOConfig:
    """DPO on the tiny GPT of chapter 6: preference data and training.

    Data: ``n_pairs`` prompts of the world, each answered twice by the reference model (at ``temperature``,
    up to ``max_new_tokens`` tokens) and labelled by Bradley-Terry on a score ``s``:
    ``P(a > b) = sigmoid((s(a) - s(b)) / label_temperature)``, with ``s`` the gold reward (``labels="gold"``,
    the labeller of chapter 6's reward model) or the proxy reward model (``labels="proxy"``).
    Training: ``epochs`` passes over the pairs in shuffled minibatches of ``batch_size`` pairs, Adam with
    learning rate ``lr`` (linearly decayed to 0), gradient norm clipped at ``max_grad_norm``. Every
    ``eval_every`` steps (and at the start and the end) ``eval_samples`` fresh responses of the policy
    measure its gold reward and its KL to the reference.
    """

    beta: float = 0.1
    n_pairs: int = 2000
    epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-4
    max_grad_norm: float = 1.0
    max_new_tokens: int = 16
    temperature: float = 1.0
    labels: str = "gold"
    label_temperature: float = 0.2
    eval_every: int = 25
    eval_samples: int = 512
    seed: int = 0

    def __post_init__(self):
        for name in ("n_pairs", "epochs", "batch_size", "max_new_tokens", "eval_every", "eval_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LMDPOConfig.{name} must be a positive integer, got {v!r}")
        for name in ("beta", "lr", "max_grad_norm", "temperature", "label_temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"LMDPOConfig.{name} must be a finite number > 0, got {v!r}")
        if self.lr >= 1:
            raise ValueError(f"LMDPOConfig.lr must be < 1, got {self.lr}")
        if self.labels not in ("gold", "proxy"):
            raise ValueError(f"LMDPOConfig.labels must be 'gold' or 'proxy', got {self.labels!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"LMDPOConfig.seed must be an integer, got {self.seed!r}")

    @property
    def steps(self) -> int:
        return self.epochs * math.ceil(self.n_pairs / self.batch_size)


LM_CHAPTER = LMDPOConfig(n_pairs=4000, epochs=1, batch_size=32, lr=3e-4, eval_every=25, eval_samples=512)
"""The chapter's setting: 4000 pairs, one pass, about 3 seconds per run on a 2-core CPU (plus evaluations)."""

LM_FAST = LMDPOConfig(n_pairs=64, epochs=2, batch_size=16, lr=1e-3, max_new_tokens=8, eval_every=4,
                      eval_samples=32)
"""The smoke setting of the tests: seconds, with chapter 6's ``smoke`` models."""


@dataclass
class LMPreferences:
    """Pairs of responses to the same prompts: ``chosen`` and ``rejected`` prompt+response tokens
    ``(n, prompt_len + R)`` with response masks ``(n, R)``, and the score each response was labelled with."""

    chosen: torch.Tensor
    chosen_mask: torch.Tensor
    rejected: torch.Tensor
    rejected_mask: torch.Tensor
    prompt_len: int
    chosen_score: np.ndarray
    rejected_score: np.ndarray

    def __len__(self) -> int:
        return int(self.chosen.shape[0])

    def __getitem__(self, index) -> "LMPreferences":
        """The pairs selected by a slice or an index array (e.g. ``prefs[:1500]``, ``prefs[1500:]``)."""
        i = index if isinstance(index, slice) else torch.as_tensor(np.asarray(index), dtype=torch.long)
        j = index if isinstance(index, slice) else np.asarray(index)
        return LMPreferences(self.chosen[i], self.chosen_mask[i], self.rejected[i], self.rejected_mask[i],
                             self.prompt_len, self.chosen_score[j], self.rejected_score[j])

    @property
    def identical(self) -> np.ndarray:
        """Pairs whose two responses are the same text (no information: their loss is ``log 2`` throughout)."""
        same = (self.chosen == self.rejected).all(1) & (self.chosen_mask == self.rejected_mask).all(1)
        return same.cpu().numpy()


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def make_lm_preferences(reference, world, cfg: LMDPOConfig, reward_model=None) -> LMPreferences:
    """Two responses of ``reference`` to each of ``cfg.n_pairs`` random prompts of ``world``, labelled by
    Bradley-Terry on the gold reward (or on ``reward_model``'s score when ``cfg.labels == "proxy"``)."""
    from .reward_model import sample_responses, score_batched

    if cfg.labels == "proxy" and reward_model is None:
        raise ValueError("labels='proxy' needs the reward model (reward_model=...)")
    gen = torch.Generator().manual_seed(cfg.seed)
    prompts = world.prompts()
    P = prompts.shape[1]
    idx = torch.randint(0, prompts.shape[0], (cfg.n_pairs,), generator=gen)
    tok_a, mask_a = sample_responses(reference, world, cfg.n_pairs, cfg.max_new_tokens, cfg.temperature, gen,
                                     prompt_idx=idx)
    tok_b, mask_b = sample_responses(reference, world, cfg.n_pairs, cfg.max_new_tokens, cfg.temperature, gen,
                                     prompt_idx=idx)
    if cfg.labels == "gold":
        s_a, s_b = world.gold_reward(tok_a.cpu().numpy(), P), world.gold_reward(tok_b.cpu().numpy(), P)
    else:
        s_a = score_batched(reward_model, tok_a, mask_a, P).cpu().double().numpy()
        s_b = score_batched(reward_model, tok_b, mask_b, P).cpu().double().numpy()
    p_a = bradley_terry_prob(s_a, s_b, cfg.label_temperature)
    a_wins = torch.rand(cfg.n_pairs, generator=gen).numpy() < p_a
    w = torch.as_tensor(a_wins, device=tok_a.device)
    return LMPreferences(
        chosen=torch.where(w[:, None], tok_a, tok_b), chosen_mask=torch.where(w[:, None], mask_a, mask_b),
        rejected=torch.where(w[:, None], tok_b, tok_a), rejected_mask=torch.where(w[:, None], mask_b, mask_a),
        prompt_len=P, chosen_score=np.where(a_wins, s_a, s_b), rejected_score=np.where(a_wins, s_b, s_a))


def lm_sequence_logprobs(model, tokens: torch.Tensor, mask: torch.Tensor, prompt_len: int,
                         temperature: float = 1.0) -> torch.Tensor:
    """``log pi(y | x) = sum_t m_t log pi_tau(y_t | x, y_<t)`` of each response, ``(B,)``, differentiable, at
    sampling temperature ``tau = temperature``.

    One forward pass (:func:`rlhf_course.gpt.response_logprobs`), then the masked sum over the response's
    tokens (:func:`rlhf_course.sequences.sequence_logprob`).
    """
    from .gpt import response_logprobs
    from .sequences import sequence_logprob

    logp, _, _ = response_logprobs(model, tokens, prompt_len, temperature)
    return sequence_logprob(logp, mask)


@torch.no_grad()
def evaluate_lm_policy(policy, reference, world, n: int = 512, max_new_tokens: int = 16,
                       temperature: float = 1.0, seed: int = 12345, reward_model=None,
                       batch_size: int = 256) -> dict:
    """The policy's gold reward and KL to the reference, measured on ``n`` fresh responses.

    Prompts are drawn with ``seed`` (every policy evaluated with the same seed answers the same prompts).
    Returns means over the responses: ``gold`` (the world's gold reward), ``kl`` (the k1 estimate: the mean
    sequence log-ratio ``log pi(y|x) - log pi_ref(y|x)`` of the policy's own samples, whose expectation is
    ``KL(pi || pi_ref)`` over responses), its standard error ``kl_se``, ``gold_se``, ``length``, ``finished``
    (share of responses that end with ``<eos>``), ``sentiment``, ``errors``, and ``proxy`` when a reward model
    is given.
    """
    from .gpt import generate, response_logprobs

    n = _check_count(n, "n")
    dev = _device_of(policy)
    gen = torch.Generator().manual_seed(seed)
    prompts_all = torch.as_tensor(world.prompts())
    prompts = prompts_all[torch.randint(0, prompts_all.shape[0], (n,), generator=gen)].to(dev)
    P = prompts.shape[1]
    was_training = policy.training
    policy.eval()
    gold, kl, length, finished, sent, err, proxy = [], [], [], [], [], [], []
    for i in range(0, n, batch_size):
        tokens, mask, _ = generate(policy, prompts[i:i + batch_size], max_new_tokens, eos_id=world.tokenizer.eos_id,
                                   pad_id=world.tokenizer.pad_id, temperature=temperature, generator=gen)
        logp, _, _ = response_logprobs(policy, tokens, P, temperature)
        ref_logp, _, _ = response_logprobs(reference, tokens, P, temperature)
        m = mask.bool()
        kl.append(torch.where(m, logp - ref_logp, torch.zeros_like(logp)).sum(1).double().cpu().numpy())
        a = world.analyze(tokens.cpu().numpy(), count_from=P)
        gold.append(a["sentiment"] - world.error_weight * (a["errors"] + 1.0 - a["finished"]))
        sent.append(a["sentiment"])
        err.append(a["errors"])
        finished.append(a["finished"])
        length.append(mask.sum(1).cpu().numpy())
        if reward_model is not None:
            proxy.append(reward_model(tokens, mask, P).double().cpu().numpy())
    policy.train(was_training)
    g, k = np.concatenate(gold), np.concatenate(kl)
    out = {"gold": float(g.mean()), "gold_se": float(g.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else float("nan"),
           "kl": float(k.mean()), "kl_se": float(k.std(ddof=1) / math.sqrt(len(k))) if len(k) > 1 else float("nan"),
           "length": float(np.concatenate(length).mean()), "finished": float(np.concatenate(finished).mean()),
           "sentiment": float(np.concatenate(sent).mean()), "errors": float(np.concatenate(err).mean())}
    if proxy:
        out["proxy"] = float(np.concatenate(proxy).mean())
    return out


@torch.no_grad()
def evaluate_lm_preferences(policy, reference, prefs: LMPreferences, beta: float, temperature: float = 1.0,
                            batch_size: int = 256) -> dict:
    """The DPO loss of ``policy`` on a set of pairs (e.g. held out), and how often its implicit reward
    ``beta log(pi/pi_ref)`` ranks the chosen response above the rejected one (``accuracy``; ties count half)."""
    beta = check_positive_scalar(beta, "beta")
    P, n = prefs.prompt_len, len(prefs)

    def seq(model, toks, masks):
        return torch.cat([lm_sequence_logprobs(model, toks[i:i + batch_size], masks[i:i + batch_size], P, temperature)
                          for i in range(0, n, batch_size)])

    was_training = policy.training
    policy.eval()
    c, r = seq(policy, prefs.chosen, prefs.chosen_mask), seq(policy, prefs.rejected, prefs.rejected_mask)
    rc, rr = seq(reference, prefs.chosen, prefs.chosen_mask), seq(reference, prefs.rejected, prefs.rejected_mask)
    policy.train(was_training)
    loss, _ = dpo_loss(c, r, rc, rr, beta)
    margin = beta * ((c - rc) - (r - rr))
    acc = ((margin > 0).double() + 0.5 * (margin == 0).double()).mean()
    return {"loss": float(loss), "accuracy": float(acc), "margin": float(margin.mean())}


@dataclass
class LMDPORun:
    """A DPO run on the language model: the trained ``policy``, the config, per-step training ``log``
    (``step``, ``loss``, ``accuracy``, ``margin``, ``chosen_logratio``, ``rejected_logratio``: the mean
    sequence log-ratios ``log pi/pi_ref`` of the batch's chosen and rejected responses) and ``evals``
    (``step`` and the fields of :func:`evaluate_lm_policy`), the first at step 0 (the reference itself)."""

    config: LMDPOConfig
    policy: object
    log: list
    evals: list
    seconds: float

    def series(self, key: str, source: str = "evals") -> np.ndarray:
        return np.asarray([r[key] for r in getattr(self, source)], dtype=np.float64)


def train_lm_dpo(reference, world, cfg: LMDPOConfig, prefs: LMPreferences | None = None, reward_model=None,
                 progress: bool = True) -> LMDPORun:
    """DPO on chapter 6's tiny GPT: the policy starts as a copy of ``reference`` and minimizes
    :func:`dpo_loss` on ``prefs`` (made by :func:`make_lm_preferences` when not given).

    Each step: one forward pass of the policy over the minibatch's chosen and rejected responses (with the
    reference's sequence log-probabilities computed once, up front), the loss, a clipped Adam step. Deterministic
    for a given ``cfg.seed`` on the CPU.
    """
    import copy
    import time

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if prefs is None:
        prefs = make_lm_preferences(reference, world, cfg, reward_model=reward_model)
    if not isinstance(prefs, LMPreferences):
        raise TypeError(f"prefs must be LMPreferences (see make_lm_preferences), got {type(prefs).__name__}")
    dev = _device_of(reference)
    P = prefs.prompt_len
    reference.eval()
    with torch.no_grad():
        ref_c = torch.cat([lm_sequence_logprobs(reference, prefs.chosen[i:i + 256], prefs.chosen_mask[i:i + 256], P,
                                                cfg.temperature) for i in range(0, len(prefs), 256)])
        ref_r = torch.cat([lm_sequence_logprobs(reference, prefs.rejected[i:i + 256], prefs.rejected_mask[i:i + 256],
                                                P, cfg.temperature) for i in range(0, len(prefs), 256)])
    torch.manual_seed(cfg.seed)
    policy = copy.deepcopy(reference).train().requires_grad_(True)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    total = cfg.steps
    log, evals = [], []

    def evaluate(step):
        e = evaluate_lm_policy(policy, reference, world, cfg.eval_samples, cfg.max_new_tokens, cfg.temperature,
                               seed=cfg.seed + 12345, reward_model=reward_model)
        evals.append({"step": step, **e})

    evaluate(0)
    bar = tqdm(total=total, desc=f"dpo beta={cfg.beta:g}", disable=not progress, leave=False)
    step = 0
    n = len(prefs)
    for _epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen).to(dev)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            b = len(idx)
            masks = torch.cat([prefs.chosen_mask[idx], prefs.rejected_mask[idx]])
            R = int(masks.sum(1).max())  # the longest response of the minibatch: no forward pass over padding only
            toks = torch.cat([prefs.chosen[idx], prefs.rejected[idx]])[:, :P + R]
            seq = lm_sequence_logprobs(policy, toks, masks[:, :R], P, cfg.temperature)
            loss, stats = dpo_loss(seq[:b], seq[b:], ref_c[idx], ref_r[idx], cfg.beta)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (1 - step / total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
            step += 1
            with torch.no_grad():
                log.append({"step": step, "loss": loss.item(), **stats,
                            "chosen_logratio": float((seq[:b] - ref_c[idx]).mean()),
                            "rejected_logratio": float((seq[b:] - ref_r[idx]).mean())})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % cfg.eval_every == 0:
                evaluate(step)
    bar.close()
    if evals[-1]["step"] != step:
        evaluate(step)
    policy.eval()
    return LMDPORun(config=cfg, policy=policy, log=log, evals=evals, seconds=time.perf_counter() - t0)
