"""DPO for the tiny language model of chapter 6 (chapter 8): the loss of :mod:`rlhf_course.dpo` on pairs of
sampled responses.

:func:`train_lm_dpo` trains chapter 6's tiny GPT on pairs of its reference model's responses labelled by the gold
reward (or the proxy reward model) with Bradley-Terry (:func:`rlhf_course.preference_models.bradley_terry_prob`),
with :func:`evaluate_lm_policy` measuring gold reward and KL exactly as for PPO. ``LM_FAST`` is the tests'
setting, ``LM_CHAPTER`` the chapter's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import check_config_ints, check_count, check_positive_scalar
from .dpo import dpo_loss
from .preference_models import bradley_terry_prob

__all__ = ["LMDPOConfig", "LM_CHAPTER", "LM_FAST", "LMPreferences", "make_lm_preferences", "lm_sequence_logprobs",
           "evaluate_lm_policy", "evaluate_lm_preferences", "LMDPORun", "train_lm_dpo"]


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
        check_config_ints(self, "n_pairs", "epochs", "batch_size", "max_new_tokens", "eval_every", "eval_samples")
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

    n = check_count(n, "n")
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
