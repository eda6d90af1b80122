"""The ``rlhf-course`` command. Each subcommand lives in the module that holds its work; that module
provides ``add_arguments(parser)`` and ``run(args) -> int`` and is imported only when its command runs."""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS = {
    "build-exercises": ("rlhf_course.notebooks", "sync Colab cells, strip outputs, generate exercises/ from solutions/"),
    "questions": ("rlhf_course.questions.listing", "list the graded questions of one or all exercises"),
    "grade": ("rlhf_course.grading.cli", "grade submitted exercise notebooks, each in a confined process"),
    "gradescope-bundle": ("rlhf_course.grading.gradescope", "write the autograder zip to upload to Gradescope"),
    "sft": ("rlhf_course.sft", "chapter 6, stage 1: train the reference model on the synthetic review language"),
    "reward-model": ("rlhf_course.reward_model", "chapter 6, stage 2: train the proxy reward model on noisy preferences"),
    "ppo": ("rlhf_course.ppo", "chapter 6: PPO with a KL penalty (runs the missing stages first)"),
    "grpo": ("rlhf_course.grpo", "critic-free policy optimization (GRPO, Dr. GRPO, RLOO) on the tiny LM"),
    "export": ("rlhf_course.hf", "write a run's model as a Hugging Face Transformers folder (needs the hf extra)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="rlhf-course", description="The rlhf-course toolkit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    # Parse the command name first, then let its own module define the rest of its arguments.
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd_parser = argparse.ArgumentParser(prog=f"rlhf-course {argv[0]}", description=COMMANDS[argv[0]][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
