"""The trainers of chapter 5 on the enumerable problems of :mod:`rlhf_course.toy.problems`.

The trainers (:func:`train`, configured by :class:`rlhf_course.toy.config.Config`) are the chapter's algorithms
(notation of :mod:`rlhf_course.toy.problems`):

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

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .. import rl
from ..kl import k1, k2, k2_from_log_ratio, k3, kl_divergence
from ..objective import rlhf_objective
from .config import Config
from .problems import DTYPE, TabularProblem, _check_logits, exact_summary, exact_values

__all__ = ["Run", "train", "exact_objective_gradient", "gradient_estimates"]


# --------------------------------------------------------------------------------------------------
# the trainers


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
