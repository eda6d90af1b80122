"""rlhf_course: the code of the rlhf-course book and the checks of its exercises.

Every formula the book derives lives here once, and the chapters, exercises, trainers and tests call it.
Modules are named for what they hold, in layers whose imports only run down (CONTRIBUTING.md has the map):

* plumbing: ``_validate`` (input checks), ``device`` (``device="auto"``), ``paths`` (the repository and the
  run caches), ``runs`` (run folders, JSON, mixed precision, the optimizer step), ``plain`` (plain data);
* the math core: ``kl`` (the KL penalty and its estimators), ``distributions``, ``preference_models``
  (Bradley-Terry, Plackett-Luce), ``sequences`` (token log-probs, sequence penalties), ``bigrams`` (exact
  sequence KL), ``objective`` (the RLHF objective, the optimal policy, best-of-n), ``rl`` (advantages,
  losses, their aggregation, KL controllers), ``scaling_laws`` (Gao et al.'s over-optimization fits);
* models and trainers: ``gpt``, ``world`` (the synthetic language and its gold reward), ``sft``,
  ``reward_model``, ``ppo_trainer`` and ``ppo`` (PPO's trainer and chapter 6's pipeline), ``loop``, ``grpo``
  (critic-free), ``dpo`` and ``dpo_lm``, ``toy`` (enumerable problems), ``support_toy``, ``critic_free_toy``,
  ``best_of_n``, ``hf`` (the bridge to Transformers and TRL; needs the ``hf`` extra);
* book helpers: ``plotting`` (the book's figures and style), ``tables``, ``widgets``, ``diagnose`` (run
  logs, detectors, the silent bugs), ``critic_free_lm``, ``seeds``;
* exercises and grading: ``questions`` (the graded questions), ``checks`` (the self-check), ``notebooks``
  (exercises generated from solutions), ``grading`` (the instructor's grader), ``cli`` (``rlhf-course``).

Importing the package imports none of torch or matplotlib; the modules that need them import them.
"""
__version__ = "0.1.0"
