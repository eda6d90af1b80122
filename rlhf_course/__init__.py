"""rlhf_course: the code of the rlhf-course book and the checks of its exercises.

Modules are named for what they hold: ``kl`` (the KL penalty and its estimators), ``checks`` (questions
and the self-check), ``questions`` (the graded questions of each exercise), ``notebooks`` (generating
exercises from solutions), ``plotting`` (the book's figure style). Importing the package imports none
of torch or matplotlib; the modules that need them import them.
"""
__version__ = "0.1.0"
