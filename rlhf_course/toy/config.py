"""The configuration of chapter 5's trainers (:func:`rlhf_course.toy.train`): :class:`Config`, one run's
settings with their validation, and ``FAST``/``FAST_ADAPTIVE``, the settings the chapter and the tests share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Config", "FAST", "FAST_ADAPTIVE", "METHODS", "SURROGATES", "BASELINES", "KL_ESTIMATORS"]

METHODS = ("reinforce", "a2c", "ppo")
SURROGATES = ("clip", "penalty", "plain")
BASELINES = ("none", "loo", "exact", "learned")
KL_ESTIMATORS = ("exact", "k1", "k2", "k3")


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
