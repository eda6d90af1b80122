"""Enumerable problems and their trainers (chapter 5): every algorithm held against the exact optimum.

- :mod:`rlhf_course.toy.problems`: the bandit and short-sequence problems, listed exhaustively, and their exact
  quantities (the optimum, the reward-KL frontier, values, TV distance);
- :mod:`rlhf_course.toy.config`: a run's settings (:class:`Config`) and the fast settings ``FAST``;
- :mod:`rlhf_course.toy.trainers`: REINFORCE, A2C and PPO on them (:func:`train`) and the gradient estimates
  the chapter compares.

All three are re-exported here, so ``from rlhf_course import toy; toy.train(...)`` is the one way to call them.
"""
from .problems import (
    TabularProblem, make_bandit, make_sequences, optimum, tv_distance, exact_summary, frontier, frontier_at,
    beta_for_kl, forward_kl_optimum, exact_values, logits_of, alternation_score, first_token_score,
)
from .config import (
    Config, FAST, FAST_ADAPTIVE, METHODS, SURROGATES, BASELINES, KL_ESTIMATORS,
)
from .trainers import (
    Run, train, exact_objective_gradient, gradient_estimates,
)

__all__ = [
    "TabularProblem", "make_bandit", "make_sequences", "optimum", "tv_distance", "exact_summary", "frontier",
    "frontier_at", "beta_for_kl", "forward_kl_optimum", "exact_values", "logits_of", "Config", "FAST",
    "FAST_ADAPTIVE", "METHODS", "SURROGATES", "BASELINES", "KL_ESTIMATORS", "Run", "train",
    "exact_objective_gradient", "gradient_estimates", "alternation_score", "first_token_score",
]
