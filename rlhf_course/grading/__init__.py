"""The instructor's grader: ``rlhf-course grade`` and ``rlhf-course gradescope-bundle``.

Student code never decides its own grade. For each submission the trusted process (``runner``) starts a
separate worker process (``worker``) that runs the notebook's code cells one by one and, when asked,
calls the answers on the registry's case inputs and hands back *plain data* (JSON) over a pipe of its
own. The trusted process parses that JSON (nothing is unpickled or executed), compares it with the
reference answers using :func:`rlhf_course.checks.grade`, and writes the reports (``report``).

The worker confines itself before any student code runs (``sandbox``): resource limits always, and where
Linux allows it (``unshare``) no network, its own process tree, and a private, read-only view of the
file system holding only what Python needs. A cell that hangs, crashes the process or exhausts its
memory costs that cell: the runner restarts the worker, replays the cells before it, and goes on.

Modules, each importing only those before it: ``settings`` (a run's limits), ``source`` (reading
submissions, cell sources), ``protocol`` (the JSON messages, and the shape check of the replies),
``sandbox`` and ``worker`` (the student's side), ``process`` (starting, timing out and killing a worker),
``runner`` (grading one submission: the trusted side), ``report`` (CSV, results.json, feedback.md),
``batch`` (grading many files in parallel), ``gradescope`` (Gradescope's layout and bundle), ``cli`` (the
``grade`` command), ``roster``. None imports torch or matplotlib.
"""
