"""Chapter 7's own runs: small stages, trained once and read back, and what a reward model and a policy do on
fresh samples. torch is imported inside these functions only."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .logs import RunLog, load_run


# ==================================================================================================
# the chapter's runs: small stages, cached (torch is imported inside these functions only)


def chapter_configs() -> dict:
    """The stage configurations of chapter 7: a reference model, a reward model and a PPO run small enough
    that each of the chapter's runs takes seconds on a CPU. Every field that shapes a run is set here, not
    left to the defaults, so that the chapter's runs stay what its text describes. Returns ``{"sft",
    "reward_model", "ppo"}``; the chapter's cases change one field of ``"ppo"`` each."""
    from ..ppo import PPOConfig
    from ..reward_model import RewardModelConfig
    from ..sft import SFTConfig

    return {
        "sft": SFTConfig(n_layer=2, n_head=4, n_embd=64, block_size=32, n_reviews=8000, steps=300, batch_size=64,
                         lr=3e-3, warmup=20, weight_decay=0.01, eval_reviews=500, seed=0),
        "reward_model": RewardModelConfig(n_pairs=1500, eval_pairs=300, epochs=2, batch_size=32, lr=5e-4,
                                          weight_decay=0.01, label_temperature=0.2, max_new_tokens=12,
                                          temperature=1.0, pooling="sum", seed=1),
        "ppo": PPOConfig(iterations=100, batch_size=64, minibatches=1, ppo_epochs=4, max_new_tokens=12,
                         temperature=1.0, lr=1e-3, beta=0.2, target_kl=None, kl_horizon=10_000.0, gamma=1.0,
                         lam=0.95, clip_eps=0.2, vf_clip_eps=0.2, vf_coef=0.1, whiten_rewards=False,
                         whiten_advantages=True, max_grad_norm=1.0, shared_value=True, missing_eos_penalty=0.0,
                         checkpoint_every=100, log_samples=8, seed=2),
    }


class PromptWorld:
    """The world's language with other prompts: wraps a :class:`rlhf_course.world.World` and replaces
    :meth:`prompts` (everything else, the gold reward included, is the world's). ``prompts`` are texts such
    as ``"the food was not"``, all the same number of words; ``<bos>`` is added."""

    def __init__(self, prompts: Sequence[str], world=None):
        from ..world import World

        self._world = world or World()
        ids = [self._world.tokenizer.encode(p) for p in prompts]
        if not ids or len({len(i) for i in ids}) != 1:
            raise ValueError("prompts must be a non-empty list of texts with the same number of words")
        self._prompts = np.array(ids, dtype=np.int64)

    def prompts(self) -> np.ndarray:
        return self._prompts.copy()

    def __getattr__(self, name):
        return getattr(self._world, name)


def cached_stages(root: str | Path, configs: dict | None = None, progress: bool = False) -> dict:
    """``root/sft`` and ``root/reward_model`` for the chapter's configurations: reused when present with the
    same configuration, trained otherwise. Returns their paths."""
    from ..reward_model import ensure_reward_model
    from ..runs import make_run_dir

    configs = configs or chapter_configs()
    root = make_run_dir(root)
    rm = ensure_reward_model(configs["reward_model"], configs["sft"], root, device="cpu", progress=progress)
    return {"sft": root / "sft", "reward_model": rm}


def cached_reward_model(root: str | Path, name: str, cfg, sft_dir: str | Path, world, progress: bool = False) -> Path:
    """A reward model trained on preferences over ``world``'s prompts, in ``root/name``; reused when finished
    with the same configuration."""
    from ..reward_model import train_reward_model
    from ..runs import check_same_config
    from ..sft import load_model

    out = Path(root) / name
    if (out / "summary.json").exists():
        check_same_config(out / "config.json", cfg, "reward model")
        return out
    reference = load_model(sft_dir, device="cpu")
    reference.eval()
    return train_reward_model(cfg, reference, out, world=world, progress=progress)


def cached_ppo(root: str | Path, name: str, cfg, sft_dir: str | Path, reward_dir: str | Path, world=None,
               progress: bool = False) -> RunLog:
    """The PPO run ``root/name`` with configuration ``cfg``: read from disk when it finished before with the
    same configuration, trained (or resumed) otherwise. Returns its :class:`RunLog`."""
    from ..ppo import train_ppo
    from ..runs import check_same_config

    out = Path(root) / name
    if (out / "summary.json").exists():
        check_same_config(out / "config.json", cfg, "PPO run")
    else:
        if (out / "config.json").exists():
            try:
                check_same_config(out / "config.json", cfg, "PPO run")
            except ValueError:  # an unfinished run of another configuration: start it over
                import shutil

                shutil.rmtree(out)
        train_ppo(cfg, out, sft_dir, reward_dir, device="cpu", resume=True, progress=progress, world=world)
    return load_run(out)


def sample_and_score(policy, reward_model, world, n: int = 256, max_new_tokens: int = 12, temperature: float = 1.0,
                     seed: int = 0, prompt_idx=None) -> dict:
    """Sample ``n`` responses of ``policy`` to ``world``'s prompts and score them with the reward model (the
    proxy) and the world's gold reward: chapter 6's :func:`rlhf_course.ppo.evaluate` (numpy arrays ``proxy``,
    ``gold``, ``errors``, ``finished``, ``fluency``, ... and the ``tokens``/``mask`` tensors), with the
    response texts also under ``texts``."""
    from ..ppo import evaluate

    e = evaluate(policy, reward_model, world, n=n, seed=seed, max_new_tokens=max_new_tokens,
                 temperature=temperature, prompt_idx=prompt_idx)
    return {**e, "texts": e["text"]}


def ranking_agreement(scores, gold, min_gap: float = 0.05) -> float:
    """Share of pairs ``(i, j)`` whose gold rewards differ by more than ``min_gap`` that ``scores`` orders the
    same way as the gold reward (1: the reward model ranks like the gold reward; 0.5: a coin)."""
    s, g = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if s.shape != g.shape or s.ndim != 1:
        raise ValueError("scores and gold must be 1-d arrays of the same length")
    ds, dg = s[:, None] - s[None, :], g[:, None] - g[None, :]
    decided = dg > min_gap
    if not decided.any():
        raise ValueError("no pair has gold rewards that differ by more than min_gap")
    return float((ds[decided] > 0).mean())


def response_logprob_np(model, tokens, mask, prompt_len: int) -> np.ndarray:
    """``log pi(y | x) = sum_t m_t log pi(y_t | x, y_<t)`` for each row of prompt+response ``tokens``: the
    response's log-probability under ``model``, as a float64 numpy array ``(B,)`` (no gradient).

    Not :func:`rlhf_course.sft.sequence_logprob` (whole rows, padding by id, a tensor) nor
    :func:`rlhf_course.sequences.sequence_logprob` (sums given per-token log-probs)."""
    import torch

    from ..gpt import response_logprobs

    with torch.no_grad():
        logp, _, _ = response_logprobs(model, tokens, prompt_len)
    return (torch.where(mask.bool(), logp, torch.zeros_like(logp))).sum(1).double().cpu().numpy()


def response_stats(policy, reference, reward_model, world, n: int = 400, seed: int = 0,
                   max_new_tokens: int = 12) -> dict:
    """The distinct responses among ``n`` samples of ``policy`` to ``world``'s prompts (use a world with one
    prompt), each with its reward-model score ``r``, ``logp = log pi(y | x)``, ``ref_logp = log pi_ref(y | x)``,
    ``count`` (how often it was sampled), and the ``tokens``/``mask`` of each. Sorted from the most likely
    under ``policy``."""
    import torch

    from ..reward_model import score_batched

    if world.prompts().shape[0] != 1:
        raise ValueError("response_stats compares responses to one prompt: give a world with a single prompt")
    e = sample_and_score(policy, reward_model, world, n=n, max_new_tokens=max_new_tokens, seed=seed)
    P = e["prompt_len"]
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, t in enumerate(e["texts"]):
        first.setdefault(t, i)
        counts[t] = counts.get(t, 0) + 1
    idx = torch.tensor(list(first.values()))
    tokens, mask = e["tokens"][idx], e["mask"][idx]
    r = score_batched(reward_model, tokens, mask, P).cpu().numpy()
    logp = response_logprob_np(policy, tokens, mask, P)
    ref_logp = response_logprob_np(reference, tokens, mask, P)
    order = np.argsort(-logp, kind="stable")
    texts = list(first)
    return {"texts": [texts[i] for i in order], "r": r[order].astype(np.float64), "logp": logp[order],
            "ref_logp": ref_logp[order], "count": np.array([counts[texts[i]] for i in order]),
            "tokens": tokens[torch.as_tensor(order.copy())], "mask": mask[torch.as_tensor(order.copy())],
            "prompt_len": P}
