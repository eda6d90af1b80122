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

The **silent bug set** (:mod:`.silent_bugs`): six small pieces of a PPO trainer, each with one real bug that
raises no error and produces plausible numbers, their correct counterparts, and :data:`SILENT_BUGS` saying which
is which.

Where each part lives: :mod:`.logs` (:class:`RunLog`, :func:`load_run`, :func:`log_table`, the example logs),
:mod:`.detectors` (:func:`smooth`, :class:`Finding`, the detectors, :func:`diagnose`, the text measures),
:mod:`.dashboard`, :mod:`.chapter_runs` and :mod:`.silent_bugs`. Every public name is re-exported here, so
``rlhf_course.diagnose.X`` is how the chapter and the exercise use them.

Only numpy is imported at module level: torch and matplotlib are imported by the functions that need them,
so that the exercise's questions (``rlhf_course.questions.ex07``) can import this module in a light process.
"""
from .chapter_runs import (PromptWorld, cached_ppo, cached_reward_model, cached_stages, chapter_configs,
                           ranking_agreement, response_logprob_np, response_stats, sample_and_score)
from ..paths import runs_folder  # where the chapter caches its runs
from .dashboard import DASHBOARD, DEFAULT_DASHBOARD, plot_dashboard
from .detectors import (ROLE_KEYS, Finding, detect_entropy_collapse, detect_kl_blowup, detect_oscillation,
                        detect_overoptimization, detect_update_spikes, diagnose, distinct_n, repetition_rate, smooth)
from .logs import _EXERCISE_LOGS  # noqa: F401 (the exercise logs' answer key, read by the tests)
from .logs import EXAMPLE_LOGS, RunLog, columns, example_log, exercise_logs, load_run, log_table
from .silent_bugs import (PIECES, SILENT_BUGS, SilentBug, correct_k3, correct_response_mask, correct_rewards,
                          correct_sample_top_k, correct_sample_with_temperature, correct_sampling_logprobs,
                          k3_estimate, per_token_rewards, response_mask, sample_top_k, sample_with_temperature,
                          shaped_rewards, topk_logits)

__all__ = [
    # reading a run
    "RunLog", "load_run", "columns", "smooth", "Finding", "detect_overoptimization", "detect_kl_blowup",
    "detect_entropy_collapse", "detect_update_spikes", "detect_oscillation", "diagnose", "repetition_rate",
    "distinct_n", "example_log", "EXAMPLE_LOGS", "exercise_logs", "log_table", "plot_dashboard", "DASHBOARD",
    "DEFAULT_DASHBOARD", "ROLE_KEYS",
    # the chapter's runs
    "chapter_configs", "runs_folder", "PromptWorld", "cached_stages", "cached_reward_model", "cached_ppo",
    "sample_and_score", "response_stats", "ranking_agreement", "response_logprob_np",
    # the silent bug set
    "per_token_rewards", "response_mask", "sample_with_temperature", "sample_top_k", "shaped_rewards",
    "k3_estimate", "correct_rewards", "correct_response_mask", "correct_sampling_logprobs", "topk_logits",
    "correct_k3", "correct_sample_with_temperature", "correct_sample_top_k", "SilentBug", "SILENT_BUGS", "PIECES",
]
