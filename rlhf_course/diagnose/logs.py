"""A run's logged metrics: reading ``metrics.jsonl`` into columns (:class:`RunLog`), a log as a Markdown table,
and example logs made by formula with the shapes real runs have (chapter 7)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


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
