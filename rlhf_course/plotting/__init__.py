"""The book's figures, in its one style.

:mod:`.style` holds what every figure shares: the colours of the roles (:data:`COLORS`: the policy is
always blue, the reference always grey, ...), :func:`use_style` (call it once at the top of a chapter),
:func:`glue` (computed numbers into the text), :func:`new_figure` and :func:`figure_png` (the PNG an
explorer widget shows). One module per subject holds the figures:

* :mod:`.kl_penalty`: the penalty and the KL divergence, per sample and along sequences (chapters 1-2);
* :mod:`.objective`: the penalized update's runs and the optimal policy (chapters 3-4);
* :mod:`.ppo`: policies on the simplex, the clipped surrogate, the reward-KL frontier (chapter 5);
* :mod:`.overoptimization`: PPO runs on the language model, proxy against gold reward (chapters 6-7);
* :mod:`.dpo`: direct preference optimization (chapter 8);
* :mod:`.critic_free`: RLOO, GRPO and best-of-n against the optimum (chapter 9).

Every public name is re-exported here: ``from rlhf_course.plotting import plot_curves`` is how chapters
use them. matplotlib is imported by the functions, never at import time.
"""
from .critic_free import (plot_best_of_n_toy, plot_fixed_points, plot_gold_vs_sqrt_kl, plot_lm_paths,
                          plot_points)
from .dpo import (plot_data_convergence, plot_dpo_landscape, plot_dpo_landscape_grid, plot_dpo_training,
                  plot_dpo_vs_ppo, plot_implicit_reward_recovery)
from .kl_penalty import (plot_estimator_histograms, plot_k3_precision, plot_kl_fits, plot_penalty_accumulation,
                         plot_penalty_bars, plot_penalty_explorer, plot_penalty_explorer_grid,
                         plot_sequence_estimators, plot_token_penalties)
from .objective import (plot_ascent_convergence, plot_beta_sweep, plot_optimal_policy_explorer,
                        plot_optimal_policy_grid, plot_reference_runs, plot_step_penalty_runs, plot_step_size)
from .overoptimization import plot_agreement_bars, plot_overoptimization, plot_proxy_vs_gold, plot_rewards_vs_sqrt_kl
from .ppo import (PATH_STYLES, plot_curves, plot_frontier, plot_grouped_bars, plot_response_bars, plot_simplex_paths,
                  plot_surrogate, plot_surrogate_grid, simplex_xy)
from .style import BETA_COLORS, COLORS, STYLE, figure_png, glue, new_figure, use_style

__all__ = [
    "COLORS", "BETA_COLORS", "STYLE", "use_style", "glue", "new_figure", "figure_png",
    "plot_penalty_bars", "plot_kl_fits", "plot_estimator_histograms", "plot_k3_precision", "plot_penalty_explorer",
    "plot_penalty_explorer_grid", "plot_token_penalties", "plot_penalty_accumulation", "plot_sequence_estimators",
    "plot_step_size", "plot_step_penalty_runs", "plot_reference_runs", "plot_optimal_policy_explorer",
    "plot_optimal_policy_grid", "plot_beta_sweep", "plot_ascent_convergence",
    "simplex_xy", "PATH_STYLES", "plot_simplex_paths", "plot_surrogate", "plot_surrogate_grid", "plot_curves",
    "plot_frontier", "plot_response_bars", "plot_grouped_bars",
    "plot_dpo_landscape", "plot_dpo_landscape_grid", "plot_data_convergence", "plot_implicit_reward_recovery",
    "plot_dpo_vs_ppo", "plot_dpo_training",
    "plot_proxy_vs_gold", "plot_overoptimization", "plot_rewards_vs_sqrt_kl", "plot_agreement_bars",
    "plot_fixed_points", "plot_best_of_n_toy", "plot_gold_vs_sqrt_kl", "plot_points", "plot_lm_paths",
]
