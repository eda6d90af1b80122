"""Reading a run (chapter 7): logged metrics, detectors of the usual failures, a dashboard, and silent bugs.

A PPO run of chapter 6 writes one JSON object per iteration to ``metrics.jsonl``. :func:`load_run` turns that
file into columns, and the detectors read the columns the way a practitioner does. Each returns a
:class:`Finding` (fired or not, at which step index, the measured value, a sentence):

* :func:`detect_overoptimization`: the gold reward peaks and falls back by ``min_drop`` while the proxy reward
  ends above its value at the gold peak (Goodhart: the proxy is being exploited);
* :func:`detect_kl_blowup`: the KL to the reference passes ``limit`` nats (or stops being finite);
* :func:`detect_entropy_collapse`: the policy's entropy falls below ``fraction`` of its value at the start;
* :func:`detect_update_spikes`: an update moved the policy too far from the one that sampled the batch
  (approximate KL above ``approx_kl_limit``, or clip fraction above ``clip_limit``);
* :func:`detect_oscillation`: a metric jumps from step to step (standard deviation of its differences).

On the logged samples, :func:`repetition_rate` (the share of a text's n-grams that repeat an earlier one) and
:func:`distinct_n` (the share of distinct n-grams over a set of texts) measure degenerate text.
:func:`plot_dashboard` draws one panel per metric and one line per run. :func:`example_log` makes metric
streams with the shape of real runs by formula (for the exercise, where nothing trains, and for tests).

The chapter's own runs: :func:`chapter_configs` (every field that shapes them), :func:`cached_stages`,
:func:`cached_reward_model` and :func:`cached_ppo` (train once, then read back), :class:`PromptWorld` (the same
language with other prompts), :func:`sample_and_score`, :func:`response_stats` and :func:`ranking_agreement`
(what a reward model and a policy do on fresh samples).

The last part is the **silent bug set**: six small pieces of a PPO trainer, each with one real bug that raises
no error and produces plausible numbers. Each has its correct counterpart, from :mod:`rlhf_course.rl`,
:mod:`rlhf_course.sequences` and :mod:`rlhf_course.kl` or written here with them, and :data:`SILENT_BUGS` says
which is which. The pieces carry the docstrings a trainer would (what they are meant to do), not their bug:
reading them to find it is the exercise. They take and return numpy arrays (torch tensors are converted).

Only numpy is imported at module level: torch and matplotlib are imported by the functions that need them,
so that the exercise's questions (``rlhf_course.questions.ex07``) can import this module in a light process.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    # reading a run
    "RunLog", "load_run", "columns", "smooth", "Finding", "detect_overoptimization", "detect_kl_blowup",
    "detect_entropy_collapse", "detect_update_spikes", "detect_oscillation", "diagnose", "repetition_rate",
    "distinct_n", "example_log", "EXAMPLE_LOGS", "exercise_logs", "log_table", "plot_dashboard",
    # the chapter's runs
    "chapter_configs", "runs_folder", "PromptWorld", "cached_stages", "cached_reward_model", "cached_ppo",
    "sample_and_score", "response_stats", "ranking_agreement", "sequence_logprob",
    # the silent bug set
    "per_token_rewards", "response_mask", "sample_with_temperature", "sample_top_k", "shaped_rewards",
    "k3_estimate", "correct_rewards", "correct_response_mask", "correct_sampling_logprobs", "topk_logits",
    "correct_k3", "correct_sample_with_temperature", "correct_sample_top_k", "SilentBug", "SILENT_BUGS", "PIECES",
]


# ==================================================================================================
# loading a run


@dataclass
class RunLog:
    """A run's logged metrics as columns (float arrays, NaN where a step did not log that key), its samples
    (step -> list of texts), and its ``config.json`` / ``summary.json`` when present."""

    columns: dict[str, np.ndarray]
    samples: dict[int, list[str]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    path: Path | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.columns:
            raise KeyError(f"this run logged no {key!r}; it has: {', '.join(sorted(self.columns))}")
        return self.columns[key]

    def __contains__(self, key: str) -> bool:
        return key in self.columns

    @property
    def steps(self) -> np.ndarray:
        return self.columns.get("step", np.arange(self.n))

    @property
    def n(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def columns(records: Sequence[dict]) -> dict[str, np.ndarray]:
    """Records (one dict per step) as columns: every numeric key becomes a float array over the records,
    NaN where a record lacks it (or holds ``None``, how a non-finite number is written to JSON)."""
    if isinstance(records, (str, bytes)) or not all(isinstance(r, dict) for r in records):
        raise TypeError("records must be a sequence of dicts, one per logged step")
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in keys and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))):
                keys.append(k)
    out = {}
    for k in keys:
        vals = [r.get(k) for r in records]
        if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in vals):
            out[k] = np.array([np.nan if v is None else float(v) for v in vals])
    return out


def _texts(value) -> list[str] | None:
    if isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        return value
    if isinstance(value, list) and value and all(isinstance(t, dict) for t in value):
        for key in ("text", "response", "sample"):
            if all(isinstance(t.get(key), str) for t in value):
                return [t[key] for t in value]
    return None


def load_run(path: str | Path, sample_keys: Iterable[str] = ("samples", "sample_texts", "texts")) -> RunLog:
    """Read a run folder (``metrics.jsonl``, and ``config.json``/``summary.json`` if present) or a
    ``.jsonl`` file. Lists of strings logged under one of ``sample_keys`` are kept as the step's samples."""
    path = Path(path)
    file = path / "metrics.jsonl" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no metrics at {file}: is this a run folder?")
    records = []
    for line in file.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line of a killed run
            continue
    if not records:
        raise ValueError(f"{file} holds no complete record")
    samples = {}
    for i, r in enumerate(records):
        for key in sample_keys:
            texts = _texts(r.get(key))
            if texts is not None:
                samples[int(r.get("step", i))] = texts
    folder = file.parent

    def _read(name):
        p = folder / name
        return json.loads(p.read_text()) if p.exists() else {}

    return RunLog(columns(records), samples, _read("config.json"), _read("summary.json"), folder)


# ==================================================================================================
# the chapter's runs: small stages, cached (torch is imported inside these functions only)


def chapter_configs() -> dict:
    """The stage configurations of chapter 7: a reference model, a reward model and a PPO run small enough
    that each of the chapter's runs takes seconds on a CPU. Every field that shapes a run is set here, not
    left to the defaults, so that the chapter's runs stay what its text describes. Returns ``{"sft",
    "reward_model", "ppo"}``; the chapter's cases change one field of ``"ppo"`` each."""
    from .ppo import PPOConfig
    from .reward_model import RewardModelConfig
    from .sft import SFTConfig

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
        from .world import World

        self._world = world or World()
        ids = [self._world.tokenizer.encode(p) for p in prompts]
        if not ids or len({len(i) for i in ids}) != 1:
            raise ValueError("prompts must be a non-empty list of texts with the same number of words")
        self._prompts = np.array(ids, dtype=np.int64)

    def prompts(self) -> np.ndarray:
        return self._prompts.copy()

    def __getattr__(self, name):
        return getattr(self._world, name)


def runs_folder(name: str = "ch07") -> Path:
    """Where a chapter caches its runs: ``book/runs/NAME`` in the course repository (found from the working
    folder, else from this package's location), or ``runs/NAME`` in the working folder outside it (Colab).
    The folder gets a ``.gitignore`` of ``*`` when it is created, so runs never end up in git."""
    from .notebooks import repo_root

    try:
        return repo_root() / "book" / "runs" / name
    except FileNotFoundError:
        pass
    here = Path(__file__).resolve().parents[1]
    if (here / "_config.yml").is_file():
        return here / "book" / "runs" / name
    return Path("runs") / name


def cached_stages(root: str | Path, configs: dict | None = None, progress: bool = False) -> dict:
    """``root/sft`` and ``root/reward_model`` for the chapter's configurations: reused when present with the
    same configuration, trained otherwise. Returns their paths."""
    from .reward_model import ensure_reward_model
    from .runs import make_run_dir

    configs = configs or chapter_configs()
    root = make_run_dir(root)
    rm = ensure_reward_model(configs["reward_model"], configs["sft"], root, device="cpu", progress=progress)
    return {"sft": root / "sft", "reward_model": rm}


def cached_reward_model(root: str | Path, name: str, cfg, sft_dir: str | Path, world, progress: bool = False) -> Path:
    """A reward model trained on preferences over ``world``'s prompts, in ``root/name``; reused when finished
    with the same configuration."""
    from .reward_model import train_reward_model
    from .runs import check_same_config
    from .sft import load_model

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
    from .ppo import train_ppo
    from .runs import check_same_config

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
    from .ppo import evaluate

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


def sequence_logprob(model, tokens, mask, prompt_len: int) -> np.ndarray:
    """``log pi(y | x) = sum_t m_t log pi(y_t | x, y_<t)`` for each row of prompt+response ``tokens``."""
    import torch

    from .gpt import response_logprobs

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

    from .reward_model import score_batched

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
    logp = sequence_logprob(policy, tokens, mask, P)
    ref_logp = sequence_logprob(reference, tokens, mask, P)
    order = np.argsort(-logp, kind="stable")
    texts = list(first)
    return {"texts": [texts[i] for i in order], "r": r[order].astype(np.float64), "logp": logp[order],
            "ref_logp": ref_logp[order], "count": np.array([counts[texts[i]] for i in order]),
            "tokens": tokens[torch.as_tensor(order.copy())], "mask": mask[torch.as_tensor(order.copy())],
            "prompt_len": P}


# ==================================================================================================
# detectors


def _series(x, name: str) -> np.ndarray:
    if isinstance(x, (str, bytes, dict)) or x is None:
        raise TypeError(f"{name} must be a sequence of numbers (one per step), got {type(x).__name__}")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence (one value per step), got shape {a.shape}")
    return a


def smooth(x, window: int = 5) -> np.ndarray:
    """Trailing moving average over the last ``window`` steps, ignoring NaN (shorter at the start)."""
    a = _series(x, "x")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    ok = np.isfinite(a)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, a, 0.0))])
    n = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, a.size + 1)
    lo = np.maximum(idx - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c[idx] - c[lo]) / (n[idx] - n[lo])


@dataclass(frozen=True)
class Finding:
    """What a detector concluded: whether it ``fired``, at which step index (``step``, or None), the
    measured ``value`` it is based on, and a sentence saying so."""

    name: str
    fired: bool
    step: int | None
    value: float
    message: str

    def __str__(self) -> str:
        return f"[{'!!' if self.fired else 'ok'}] {self.name}: {self.message}"


def detect_overoptimization(proxy, gold, min_drop: float = 0.1, window: int = 5) -> Finding:
    """Goodhart's law in a log: the (smoothed) gold reward peaks and ends at least ``min_drop`` below its
    peak, while the proxy reward ends above its value at the gold peak. ``step`` is the gold peak: the
    checkpoint to keep. ``value`` is the gold reward lost since the peak."""
    proxy, gold = _series(proxy, "proxy"), _series(gold, "gold")
    if proxy.shape != gold.shape:
        raise ValueError(f"proxy and gold must have one value per step each, got {proxy.size} and {gold.size}")
    sp, sg = smooth(proxy, window), smooth(gold, window)
    peak = int(np.nanargmax(sg))
    drop = float(sg[peak] - sg[-1])
    proxy_gain = float(sp[-1] - sp[peak])
    fired = drop >= min_drop and proxy_gain > 0
    msg = (f"gold reward peaked at step index {peak} ({sg[peak]:.3f}) and ends at {sg[-1]:.3f} (lost {drop:.3f}) "
           f"while the proxy reward went from {sp[peak]:.3f} to {sp[-1]:.3f}")
    return Finding("over-optimization", fired, peak if fired else None, drop, msg)


def detect_kl_blowup(kl, limit: float) -> Finding:
    """The KL to the reference passes ``limit`` nats (per response), or is not finite. ``step`` is the
    first step index where it does; ``value`` the largest finite KL seen."""
    kl = _series(kl, "kl")
    if not (isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a finite number > 0, got {limit!r}")
    bad = ~np.isfinite(kl) | (np.nan_to_num(kl, nan=np.inf) > limit)
    first = int(np.argmax(bad)) if bad.any() else None
    finite = kl[np.isfinite(kl)]
    top = float(finite.max()) if finite.size else float("nan")
    msg = (f"KL to the reference passes {limit:g} at step index {first} (largest {top:.3f})" if first is not None
           else f"KL to the reference stays below {limit:g} (largest {top:.3f})")
    return Finding("KL blow-up", first is not None, first, top, msg)


def detect_entropy_collapse(entropy, fraction: float = 0.5, window: int = 3) -> Finding:
    """The (smoothed) entropy falls below ``fraction`` of its first value. ``value`` is the smallest
    smoothed entropy over the first one."""
    entropy = _series(entropy, "entropy")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    s = smooth(entropy, window)
    start = entropy[np.isfinite(entropy)][0]
    ratio = s / start
    below = np.nan_to_num(ratio, nan=np.inf) < fraction
    first = int(np.argmax(below)) if below.any() else None
    low = float(np.nanmin(ratio))
    msg = (f"entropy falls below {fraction:g} of its start ({start:.3f}) at step index {first}; lowest "
           f"{low:.2f} of it" if first is not None else f"entropy stays above {fraction:g} of its start "
           f"({start:.3f}); lowest {low:.2f} of it")
    return Finding("entropy collapse", first is not None, first, low, msg)


def detect_update_spikes(approx_kl, clipfrac, approx_kl_limit: float = 0.05, clip_limit: float = 0.3) -> Finding:
    """Updates that moved the policy too far from the one that sampled the batch: approximate KL between
    them above ``approx_kl_limit``, or a clip fraction above ``clip_limit``. ``value`` is the share of
    steps that spiked; ``step`` the first."""
    approx_kl, clipfrac = _series(approx_kl, "approx_kl"), _series(clipfrac, "clipfrac")
    if approx_kl.shape != clipfrac.shape:
        raise ValueError("approx_kl and clipfrac must have one value per step each")
    spike = (np.nan_to_num(approx_kl, nan=np.inf) > approx_kl_limit) | (np.nan_to_num(clipfrac) > clip_limit)
    first = int(np.argmax(spike)) if spike.any() else None
    share = float(spike.mean())
    msg = (f"{spike.sum()} of {spike.size} updates spiked (approx KL > {approx_kl_limit:g} or clip fraction > "
           f"{clip_limit:g}), first at step index {first}; largest approx KL {np.nanmax(approx_kl):.3g}, "
           f"largest clip fraction {np.nanmax(clipfrac):.3f}")
    return Finding("update spikes", first is not None, first, share, msg)


def detect_oscillation(series, limit: float, start: int = 0, name: str = "the reward") -> Finding:
    """A metric (by default the reward) jumps between consecutive steps: the standard deviation of its
    step-to-step differences, from step index ``start`` on, is above ``limit``. ``value`` is that standard
    deviation."""
    series = _series(series, "series")
    d = np.diff(series[start:])
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise ValueError("need at least three finite values after `start` to measure step-to-step jumps")
    jitter = float(d.std())
    fired = jitter > limit
    return Finding("oscillation", fired, start if fired else None, jitter,
                   f"step-to-step changes of {name} have standard deviation {jitter:.3f} (limit {limit:g})")


# the keys a chapter-6 run logs, by role (the first one present is used)
ROLE_KEYS = {
    "proxy": ("proxy", "reward", "proxy_reward", "score", "rm_score"),
    "gold": ("gold", "gold_reward"),
    "kl": ("kl", "kl_k1", "kl_k3", "kl_ref"),
    "entropy": ("entropy",),
    "approx_kl": ("approx_kl",),
    "clipfrac": ("clipfrac", "clip_fraction"),
}


def _role(run, role: str):
    cols = run.columns if isinstance(run, RunLog) else run
    for k in ROLE_KEYS[role]:
        if k in cols:
            return np.asarray(cols[k], dtype=np.float64)
    return None


def diagnose(run, kl_limit: float = 10.0, min_gold_drop: float = 0.1, entropy_fraction: float = 0.5,
             approx_kl_limit: float = 0.05, clip_limit: float = 0.3) -> list[Finding]:
    """Every detector whose metrics ``run`` (a :class:`RunLog` or a dict of columns) has, in one list."""
    out = []
    proxy, gold = _role(run, "proxy"), _role(run, "gold")
    if proxy is not None and gold is not None:
        out.append(detect_overoptimization(proxy, gold, min_gold_drop))
    if (kl := _role(run, "kl")) is not None:
        out.append(detect_kl_blowup(kl, kl_limit))
    if (ent := _role(run, "entropy")) is not None:
        out.append(detect_entropy_collapse(ent, entropy_fraction))
    akl, cf = _role(run, "approx_kl"), _role(run, "clipfrac")
    if akl is not None and cf is not None:
        out.append(detect_update_spikes(akl, cf, approx_kl_limit, clip_limit))
    return out


# --------------------------------------------------------------------------------------------------
# the samples


def _ngrams(words: list[str], n: int) -> list[tuple]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be strings (or a list of strings)")
    return texts


def repetition_rate(texts, n: int = 2) -> float:
    """Mean over texts of the share of a text's word n-grams that already occurred earlier in the same text.

    0 for text that never repeats itself; close to 1 for "great great great great ...". Texts shorter than
    ``n + 1`` words count as 0. A list of texts gives the mean over them.
    """
    texts = _check_texts(texts)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not texts:
        raise ValueError("texts is empty")
    rates = []
    for t in texts:
        grams = _ngrams(t.split(), n)
        seen, rep = set(), 0
        for g in grams:
            rep += g in seen
            seen.add(g)
        rates.append(rep / len(grams) if grams else 0.0)
    return float(np.mean(rates))


def distinct_n(texts, n: int = 2) -> float:
    """Distinct word n-grams over all n-grams of a set of texts (1 = no n-gram repeats anywhere)."""
    texts = _check_texts(texts)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    grams = [g for t in texts for g in _ngrams(t.split(), n)]
    if not grams:
        raise ValueError(f"the texts hold no {n}-gram")
    return len(set(grams)) / len(grams)


# ==================================================================================================
# example logs: small metric streams made by code, with the shapes real runs have (for the exercise,
# where nothing trains, and for the tests of the detectors)


def _example(kind: str, steps: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.float64)
    u = t / (steps - 1)
    noise = lambda s: s * rng.standard_normal(steps)  # noqa: E731
    calm = lambda a, s: a + s * np.abs(rng.standard_normal(steps))  # noqa: E731
    rise = 1 - np.exp(-4 * u)
    log = {"step": t}
    if kind == "healthy":  # beta = 0.05: everything rises together and settles
        log |= {"proxy": 0.9 * rise + noise(0.03), "gold": 0.7 * rise + noise(0.03), "kl": 2.0 * rise + noise(0.05),
                "entropy": 1.6 - 0.3 * u + noise(0.01), "approx_kl": calm(0.01, 0.004), "clipfrac": calm(0.08, 0.02),
                "errors": 0.2 - 0.15 * rise + np.abs(noise(0.01)), "fluency": -1.7 + 0.2 * rise + noise(0.02),
                "value_loss": 0.3 * np.exp(-3 * u) + calm(0.01, 0.01), "beta": np.full(steps, 0.05)}
    elif kind == "hacking":  # beta too small: at one iteration the policy finds text the reward model overrates
        jump = (u >= 0.35).astype(float)
        gold = 0.55 * (1 - np.exp(-8 * u)) - jump * (1.0 + 0.4 * (u - 0.35))
        log |= {"proxy": 1.4 * (1 - np.exp(-8 * u)) + jump * 0.6 * (1 - np.exp(-4 * (u - 0.35))) + noise(0.04),
                "gold": gold + noise(0.03),
                "kl": 3.0 * (1 - np.exp(-8 * u)) + jump * (8 + 10 * (u - 0.35)) + noise(0.1),
                "entropy": 1.6 * np.exp(-2.2 * u) + noise(0.01),
                "approx_kl": calm(0.015, 0.005), "clipfrac": calm(0.1, 0.03),
                "errors": 0.2 + jump * (1.8 + 1.0 * (u - 0.35)) + np.abs(noise(0.02)),
                "fluency": -1.7 - jump * (2.0 + 1.5 * (u - 0.35)) + noise(0.03),
                "value_loss": 0.3 * np.exp(-3 * u) + calm(0.01, 0.01), "beta": np.full(steps, 0.05)}
    elif kind == "unstable":  # learning rate too large: spikes in approx KL and clip fraction, reward jumps
        spikes = (rng.random(steps) < 0.35) * rng.exponential(0.4, steps)
        log |= {"proxy": 0.5 * (1 - np.exp(-6 * u)) + noise(0.35), "kl": np.cumsum(0.4 + spikes * 3),
                "gold": 0.2 * (1 - np.exp(-6 * u)) - 0.6 * u + noise(0.2),
                "entropy": 1.6 * np.exp(-1.2 * u) + noise(0.08),
                "approx_kl": calm(0.04, 0.03) + spikes, "clipfrac": np.clip(0.3 + 0.5 * spikes + noise(0.05), 0, 1),
                "errors": 0.2 + 2.0 * u + np.abs(noise(0.3)), "fluency": -1.7 - 2.0 * u + noise(0.3),
                "value_loss": 0.3 + 2 * spikes + calm(0.05, 0.05), "beta": np.full(steps, 0.05)}
    elif kind == "stalled":  # beta too large for the reward's scale: safe, and nothing learned
        log |= {"proxy": 0.05 * rise + noise(0.03), "gold": 0.04 * rise + noise(0.03), "kl": calm(0.02, 0.005),
                "entropy": 1.6 + noise(0.01), "approx_kl": calm(0.002, 0.001), "clipfrac": calm(0.01, 0.005),
                "errors": 0.2 + np.abs(noise(0.01)), "fluency": -1.7 + noise(0.02),
                "value_loss": 0.3 * np.exp(-3 * u) + calm(0.01, 0.01), "beta": np.full(steps, 5.0)}
    elif kind == "regressing":  # beta too small, small steps: calm updates, the proxy rises, behaviour regresses
        gold = 0.5 * np.sin(np.pi * np.minimum(u / 0.6, 1.0) / 1.0) * (u < 0.3) + (u >= 0.3) * (0.5 - 2.2 * (u - 0.3))
        log |= {"proxy": 1.8 * (1 - np.exp(-2.5 * u)) + noise(0.03), "gold": gold + noise(0.03),
                "kl": 14 * u ** 1.3 + noise(0.1), "entropy": 1.6 - 1.2 * u + noise(0.02),
                "approx_kl": calm(0.005, 0.003), "clipfrac": calm(0.04, 0.015),
                "errors": 0.2 + 3.5 * np.maximum(u - 0.3, 0) + np.abs(noise(0.02)),
                "fluency": -1.6 - 4.5 * np.maximum(u - 0.3, 0) + noise(0.03),
                "value_loss": 0.3 * np.exp(-3 * u) + calm(0.01, 0.01), "beta": np.full(steps, 0.05)}
    elif kind == "adaptive":  # a KL target of 1.2 nats: beta rises until the KL holds there
        kl = 1.2 * (1 - np.exp(-6 * u)) + 0.25 * np.exp(-((u - 0.25) / 0.1) ** 2)
        log |= {"proxy": 0.8 * (1 - np.exp(-5 * u)) + noise(0.03), "gold": 0.62 * (1 - np.exp(-5 * u)) + noise(0.03),
                "kl": kl + noise(0.05), "entropy": 1.6 - 0.4 * u + noise(0.01), "approx_kl": calm(0.01, 0.004),
                "clipfrac": calm(0.07, 0.02), "errors": 0.2 - 0.15 * rise + np.abs(noise(0.01)),
                "fluency": -1.7 + 0.2 * rise + noise(0.02), "value_loss": 0.3 * np.exp(-3 * u) + calm(0.01, 0.01),
                "beta": 0.05 * np.exp(1.4 * np.minimum(u / 0.5, 1.0))}
    elif kind == "deployed":  # days after deployment: the share of a new kind of prompt grows
        share = 1 / (1 + np.exp(-(t - steps / 2) / (steps / 12)))
        log |= {"proxy": 1.2 + 0.05 * share + noise(0.03), "gold": 0.55 * (1 - share) - 0.6 * share + noise(0.04),
                "new_prompt_share": share, "rm_human_agreement": 0.77 * (1 - share) + 0.44 * share + noise(0.01)}
    else:
        raise ValueError(f"unknown example kind {kind!r}; known: {', '.join(EXAMPLE_LOGS)}")
    return log


EXAMPLE_LOGS = ("healthy", "hacking", "unstable", "stalled", "regressing", "adaptive", "deployed")


def example_log(kind: str, steps: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """A metric stream of ``steps`` steps with the shape of a real run of the given kind (see
    :data:`EXAMPLE_LOGS`): deterministic for a seed, built by formulas plus noise, not by training.
    ``"deployed"`` is a monitoring log after deployment (one step a day), not a training log."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise ValueError(f"steps must be an integer >= 10, got {steps!r}")
    return _example(kind, steps, seed)


# the four logs of the exercise's matching question, under neutral names
_EXERCISE_LOGS = {"log_1": ("hacking", 11), "log_2": ("stalled", 12), "log_3": ("unstable", 13),
                  "log_4": ("healthy", 14)}


def exercise_logs() -> dict[str, dict[str, np.ndarray]]:
    """Four example logs, ``log_1`` to ``log_4``, each of one kind: which is which is for the reader to find."""
    return {name: example_log(kind, seed=seed) for name, (kind, seed) in _EXERCISE_LOGS.items()}


def log_table(run, keys: Sequence[str], rows: Sequence[int], fmt: str = "{:.3f}") -> str:
    """A Markdown table of ``keys`` (columns) at step indices ``rows``: a log as a reader sees it."""
    cols = run.columns if isinstance(run, RunLog) else run
    steps = np.asarray(cols.get("step", np.arange(len(next(iter(cols.values()))))))
    head = "| step | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    lines = []
    for i in rows:
        vals = []
        for k in keys:
            v = float(np.asarray(cols[k])[i])
            vals.append(fmt.format(v) if np.isfinite(v) else "n/a")
        lines.append(f"| {int(steps[i])} | " + " | ".join(vals) + " |")
    return head + "\n".join(lines)


# ==================================================================================================
# the run dashboard


# the metrics of a run's dashboard, in order, with their panel titles
DASHBOARD = (
    ("proxy", "proxy reward (RM score)"), ("gold", "gold reward"), ("kl", "KL to the reference (k1)"),
    ("entropy", "entropy per token"), ("approx_kl", "approx. KL of the update"), ("clipfrac", "clip fraction"),
    ("value_loss", "value loss"), ("explained_variance", "explained variance"), ("errors", "slips per response"),
    ("fluency", "fluency (log p per token)"), ("length", "response length"), ("beta", "beta"),
    ("finished", "share of responses that end"),
    ("kl_k3", "KL to the reference (k3)"),
)
DEFAULT_DASHBOARD = ("proxy", "gold", "kl", "entropy", "approx_kl", "clipfrac", "value_loss", "explained_variance")


def plot_dashboard(runs: dict, keys: Sequence[str] | None = None, smooth_window: int = 1, ncols: int = 4,
                   fig=None, styles: dict | None = None, logy: Sequence[str] = (), hlines: dict | None = None):
    """One panel per metric, one line per run: ``runs`` maps a label to a :class:`RunLog` or a dict of
    columns. ``keys`` picks metrics (default: every dashboard metric some run has). ``styles`` maps a
    label to matplotlib keyword arguments (colour, line style); metrics in ``logy`` get a log scale;
    ``hlines`` maps a metric to a value drawn as a dashed line (a limit, a budget)."""
    import matplotlib.pyplot as plt

    from .plotting import COLORS

    if not runs:
        raise ValueError("runs is empty: give at least one run to plot")
    cols = {lab: (r.columns if isinstance(r, RunLog) else r) for lab, r in runs.items()}
    titles = {k: title for k, title in DASHBOARD}
    if keys is None:
        keys = [k for k in DEFAULT_DASHBOARD if any(k in c for c in cols.values())]
    keys = list(keys)
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = fig or plt.figure(figsize=(2.5 * ncols + 0.5, 2.1 * nrows + (0.5 if len(cols) > 1 else 0.1)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    palette = [COLORS["policy"], COLORS["optimal"], COLORS["reward"], COLORS["proxy"], COLORS["kl"],
               COLORS["reference"]]
    for ax, key in zip(axes, keys):
        for i, (lab, c) in enumerate(cols.items()):
            if key not in c:
                continue
            y = np.asarray(c[key], dtype=float)
            x = np.asarray(c.get("step", np.arange(y.size)))
            style = {"color": palette[i % len(palette)], "lw": 1.2, **((styles or {}).get(lab, {}))}
            ax.plot(x, smooth(y, smooth_window) if smooth_window > 1 else y, label=lab, **style)
        if key in logy:
            ax.set_yscale("log")
        if hlines and key in hlines:
            ax.axhline(hlines[key], color="black", lw=0.8, ls="--")
        ax.set_title(titles.get(key, key), fontsize=9)
        ax.tick_params(which="both", labelsize=7)
        ax.set_xlabel("PPO iteration", fontsize=7)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if len(cols) > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(cols), 4), fontsize=8)
    return fig


# ==================================================================================================
# the silent bug set: six trainer pieces with one real bug each (numpy in, numpy out)


def _np_in(x, dtype=np.float64) -> np.ndarray:
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def _gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(logits.shape).clip(1e-20, 1 - 1e-7)
    return np.argmax(logits - np.log(-np.log(u)), axis=-1)


# ---- the six pieces (as a trainer would write them) ----------------------------------------------


def per_token_rewards(score, logp, ref_logp, mask, beta):
    """Per-token rewards of a batch of responses padded to a common length (``mask`` 1 on real tokens):
    a KL penalty ``-beta (logp - ref_logp)`` on every token, plus the reward model's score for the
    whole response at its end."""
    logp, ref_logp, mask = _np_in(logp), _np_in(ref_logp), _np_in(mask)
    rewards = -beta * (logp - ref_logp) * mask
    rewards[:, -1] += _np_in(score)
    return rewards * mask


def response_mask(response, eos_id):
    """Mask of the real tokens of sampled responses (``(batch, time)``, padded after each response ends):
    1 for a response token, 0 for padding."""
    response = _np_in(response, np.int64)
    pad_id = eos_id  # the tokenizer has no padding token: pad with the end token, as is commonly done
    return (response != pad_id).astype(np.float64)


def sample_with_temperature(logits, temperature, rng):
    """One sampling step at a temperature: ``y ~ softmax(logits / T)`` for each row of ``logits``
    ``(batch, vocab)``; returns the tokens and their log-probabilities, kept for PPO's ratio."""
    logits = _np_in(logits)
    tokens = _gumbel_argmax(logits / temperature, rng)
    logp = np.take_along_axis(_log_softmax(logits), tokens[:, None], -1)[:, 0]
    return tokens, logp


def sample_top_k(logits, k, rng):
    """One top-k sampling step: keep each row's ``k`` most likely tokens, sample among them in proportion
    to their probabilities; returns the tokens and their log-probabilities, kept for PPO's ratio."""
    logits = _np_in(logits)
    kth = np.sort(logits, axis=-1)[:, -k][:, None]
    tokens = _gumbel_argmax(np.where(logits >= kth, logits, -np.inf), rng)
    logp = np.take_along_axis(_log_softmax(logits), tokens[:, None], -1)[:, 0]
    return tokens, logp


def shaped_rewards(score, logp, ref_logp, mask, beta):
    """Per-token rewards with the KL penalty against the reference, the score added at each response's
    last real token (``mask`` is 1 on a prefix of each row)."""
    logp, ref_logp, mask = _np_in(logp), _np_in(ref_logp), _np_in(mask)
    rewards = beta * (logp - ref_logp) * mask
    last = mask.sum(1).astype(np.int64) - 1
    rewards[np.arange(len(last)), last] += _np_in(score)
    return rewards


def k3_estimate(logp, ref_logp):
    """The k3 estimate of the KL to the reference for each sampled token, ``(r - 1) - log r`` with
    ``log r = ref_logp - logp``; inputs in the trainer's float32."""
    x = np.asarray(_np_in(ref_logp, np.float32) - _np_in(logp, np.float32), dtype=np.float32)
    return np.exp(x) - np.float32(1) - x


# ---- the correct pieces --------------------------------------------------------------------------


def correct_rewards(score, logp, ref_logp, mask, beta):
    """``r_t = -beta (logp_t - ref_logp_t) + [t = T] score``: :func:`rlhf_course.rl.kl_penalized_rewards`,
    with numpy in and out (torch is imported here, lazily)."""
    import torch

    from .rl import kl_penalized_rewards

    t = lambda x: torch.as_tensor(_np_in(x))  # noqa: E731
    rewards, _ = kl_penalized_rewards(t(score), t(logp), t(ref_logp), t(mask), float(beta))
    return rewards.numpy()


def correct_response_mask(response, eos_id):
    """1 up to and including each row's first ``eos_id``, 0 after it (rows with no end token: all 1).
    The rule of :func:`rlhf_course.gpt.generate`, which pads with a distinct padding token."""
    response = _np_in(response, np.int64)
    if response.ndim != 2:
        raise ValueError(f"response must be (batch, time), got shape {response.shape}")
    is_eos = response == eos_id
    first = np.where(is_eos.any(1), is_eos.argmax(1), response.shape[1])
    return (np.arange(response.shape[1])[None, :] <= first[:, None]).astype(np.float64)


def topk_logits(logits, k: int):
    """Logits of the top-``k`` distribution: each row's ``k`` largest kept, the others ``-inf`` (ties at
    the ``k``-th value kept)."""
    logits = _np_in(logits)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k must be an integer in [1, {logits.shape[-1]}], got {k!r}")
    kth = np.sort(logits, axis=-1)[..., -k][..., None]
    return np.where(logits >= kth, logits, -np.inf)


def correct_sampling_logprobs(logits, tokens, temperature: float = 1.0, top_k: int | None = None):
    """Log-probabilities of ``tokens`` under the distribution they were sampled from: ``softmax`` of the
    logits divided by the temperature, restricted to the top ``k`` when ``top_k`` is set. Built on
    :func:`rlhf_course.sequences.token_logprobs` (the temperature) and :func:`topk_logits`."""
    from .sequences import token_logprobs

    logits = _np_in(logits)
    if top_k is not None:
        logits = topk_logits(logits, int(top_k))
    return token_logprobs(logits, _np_in(tokens, np.int64), temperature)


def correct_sample_with_temperature(logits, temperature, rng):
    """:func:`sample_with_temperature` done right: the log-probabilities are those of ``softmax(logits / T)``,
    the distribution the tokens came from (the same random draws give the same tokens)."""
    logits = _np_in(logits)
    tokens = _gumbel_argmax(logits / temperature, rng)
    return tokens, correct_sampling_logprobs(logits, tokens, temperature)


def correct_sample_top_k(logits, k, rng):
    """:func:`sample_top_k` done right: the log-probabilities are those of the top-``k`` distribution
    (the same random draws give the same tokens)."""
    logits = _np_in(logits)
    tokens = _gumbel_argmax(topk_logits(logits, k), rng)
    return tokens, correct_sampling_logprobs(logits, tokens, 1.0, k)


def correct_k3(logp, ref_logp):
    """k3 computed stably, ``expm1(x) - x``: :func:`rlhf_course.kl.k3`."""
    from .kl import k3

    return k3(_np_in(logp, np.float32), _np_in(ref_logp, np.float32))


@dataclass(frozen=True)
class SilentBug:
    """One piece of the silent bug set: the buggy ``piece``, its ``correct`` counterpart (same call), what
    the bug is, and what it does to a run."""

    key: str
    title: str
    piece: Callable
    correct: Callable
    bug: str
    effect: str


SILENT_BUGS: dict[str, SilentBug] = {b.key: b for b in (
    SilentBug("wrong_token", "score on the wrong token", per_token_rewards, correct_rewards,
              "the score is added at the last column of the padded batch, not at each response's last real "
              "token; multiplied by the mask, it vanishes from every response shorter than the batch",
              "only responses as long as the batch are ever scored: the policy learns to write long, and the "
              "reward model's preferences never reach the others"),
    SilentBug("pad_is_eos", "pad equal to EOS", response_mask, correct_response_mask,
              "the padding token is the end token, so the mask `response != pad` also masks each response's "
              "own end token",
              "the end token never enters the loss, the KL or the score position: the choice to stop is "
              "never trained nor penalized, and the score is read one token early"),
    SilentBug("no_temperature", "log-probs without the sampling temperature", sample_with_temperature,
              correct_sample_with_temperature,
              "tokens are sampled from softmax(logits / T) but their log-probabilities are those of "
              "softmax(logits)",
              "PPO's ratio is not 1 on the first update, before any step (positive approximate KL and clip "
              "fraction from the start), and the KL estimates refer to another distribution"),
    SilentBug("topk_full_softmax", "top-k sampling scored with full-softmax log-probs", sample_top_k,
              correct_sample_top_k,
              "tokens are sampled from the top-k distribution but scored under the full softmax",
              "the stored log-probabilities are too low by log(mass of the top k): importance ratios and KL "
              "estimates use a distribution that did not produce the samples"),
    SilentBug("kl_sign", "a KL term with the wrong sign", shaped_rewards, correct_rewards,
              "the per-token penalty is +beta (logp - ref_logp): moving away from the reference is rewarded",
              "the KL grows steadily, faster with a larger beta: the knob meant to hold the policy pushes it"),
    SilentBug("k3_unstable", "k3 computed unstably", k3_estimate, correct_k3,
              "exp(x) - 1 - x in float32 subtracts nearly equal numbers when the policies are close",
              "the logged KL is noise (or exactly 0) early in a run and wrong by large factors while the "
              "policies are close"),
)}

# the pieces under neutral labels, in an order unrelated to the bug list (the exercise asks which is which)
PIECES: dict[str, Callable] = {
    "piece_1": sample_top_k, "piece_2": shaped_rewards, "piece_3": response_mask,
    "piece_4": k3_estimate, "piece_5": per_token_rewards, "piece_6": sample_with_temperature,
}
