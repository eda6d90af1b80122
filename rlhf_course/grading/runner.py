"""What grading one submission means: run its cells in a worker, collect each answer, grade it.

A cell that runs past the per-cell time limit, or kills the worker (``os._exit``, a segfault, the memory
limit), is marked failed; the worker is replaced by a fresh one, the cells that ran before it are run
again (without the failed one), and the notebook goes on. A question whose answer was defined in the
failed cell then finds no answer, and loses its points; the others keep theirs. The same holds for an
answer that hangs or crashes while it is being called on a case: that case fails, and (since a hung
answer would hang its other cases too) the question's remaining cases are not run.

The worker process itself (starting it confined, its pipes, timeouts, killing it) is
:mod:`rlhf_course.grading.process`. Only JSON comes back from it; it is parsed with a size limit, checked
for shape (:func:`rlhf_course.grading.protocol.sanitize_record`), and scored by
:func:`rlhf_course.checks.grade` here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import Question, Result, case_payload, function_record, grade
from ..plain import MAX_STR
from ..questions import exercise_ids, questions_for
from ..questions.base import hidden_cases
from .process import Worker, WorkerFailure, probe_isolation  # noqa: F401  (probe_isolation: re-exported)
from .protocol import sanitize_record
from .settings import Settings
from .source import Cell, SubmissionError, code_cells, parse_notebook, python_source

# Statuses of a submission, most serious first (the row shows the most serious that happened).
STATUSES = ("grader-error", "invalid-notebook", "unknown-exercise", "wrong-exercise", "total-timeout",
            "crashed", "timeout", "memory", "missing-cells", "ok")
NOT_GRADED = ("grader-error", "invalid-notebook", "unknown-exercise", "wrong-exercise")


@dataclass
class Graded:
    """Everything known about one graded (or ungradable) submission."""

    name: str  # as given: the path relative to the folder, or the file name
    path: str
    exercise: str | None = None
    status: str = "ok"
    score: float | None = 0.0  # None: the grader failed (status grader-error), so there is no score
    max_score: float | None = None
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    isolation: str = ""

    def add_status(self, status: str) -> None:
        if STATUSES.index(status) < STATUSES.index(self.status):
            self.status = status


# --------------------------------------------------------------------------------------------------
# one submission


class _OutOfTime(Exception):
    pass


class _OutOfRestarts(Exception):
    pass


@dataclass
class CellRun:
    cell: Cell
    status: str = "not-run"  # ok | error | timeout | crashed | memory | not-run
    error: str = ""
    memory: bool = False


class Session:
    """The cells of one submission, run in a worker that is replaced whenever one dies or hangs."""

    def __init__(self, isolation: str, settings: Settings, deadline: float, graded: Graded,
                 guards: tuple[str, ...] = ()):
        self.isolation, self.settings, self.deadline, self.graded = isolation, settings, deadline, graded
        self.guards = guards  # every guarded function of the exercise, watched by each worker
        self.worker: Worker | None = None
        self.starts = 0
        self.ran: list[CellRun] = []  # cells that ran to their end (ok or an exception), in order
        self.runs: dict[int, CellRun] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _timeout(self) -> tuple[float, bool]:
        left = self.left()
        if left <= 0:
            raise _OutOfTime()
        return (self.settings.timeout, False) if left > self.settings.timeout else (left, True)

    def _request(self, msg: dict) -> dict:
        timeout, is_total = self._timeout()
        try:
            return self.worker.request(msg, timeout)
        except WorkerFailure as exc:
            self.drop_worker()
            if exc.kind == "timeout" and is_total:
                raise _OutOfTime() from None
            raise

    def drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None

    def ensure_worker(self) -> None:
        """A live worker that has run every cell in ``self.ran``: start one and replay if needed."""
        while self.worker is None:
            if self.starts > self.settings.max_restarts:
                raise _OutOfRestarts()
            if self.left() <= 0:
                raise _OutOfTime()
            self.starts += 1
            self.worker = Worker(self.isolation, self.settings, self.guards)  # WorkerFailure("startup") goes up
            if self.isolation == "namespaces" and not all(self.worker.hello.get("checks", {}).values()):
                failed = [k for k, v in self.worker.hello.get("checks", {}).items() if not v]
                self.drop_worker()
                raise WorkerFailure("startup", "the confinement did not hold: " + ", ".join(failed))
            for run in list(self.ran):  # replay: the failed cells are not among them
                try:
                    self._exec(run)
                except WorkerFailure as exc:
                    self._failed(run, exc, replay=True)
                    self.ran.remove(run)
                    break
                if run.memory:
                    self._out_of_memory(run, replay=True)
                    self.ran.remove(run)
                    break

    def _exec(self, run: CellRun) -> None:
        src = run.cell.source
        reply = self._request({"op": "exec", "cell": run.cell.index + 1, "source": src, "python": python_source(src)})
        if reply.get("ok") is True:
            run.status, run.error = "ok", ""
        else:
            run.status, run.error = "error", str(reply.get("error", "?"))[:MAX_STR]
            run.memory = bool(reply.get("memory"))

    def _failed(self, run: CellRun, exc: WorkerFailure, replay: bool = False) -> None:
        run.status = "timeout" if exc.kind == "timeout" else "crashed"
        when = " when the notebook was run again after an earlier failure" if replay else ""
        if exc.kind == "timeout":
            run.error = f"did not finish within {self.settings.timeout:g} s{when}: it was stopped"
        elif exc.kind == "protocol":
            run.error = f"broke the grader's connection to the notebook{when} ({exc.detail})"
        else:
            run.error = f"crashed the Python process{when} ({exc.detail})"
        self.graded.add_status("timeout" if exc.kind == "timeout" else "crashed")
        self.graded.notes.append(f"{run.cell.label()} {run.error}; the notebook went on without it.")

    def note_output(self) -> None:
        """Say so when the notebook printed more than the worker keeps (the grader never needs it)."""
        if self.worker is None:
            return
        try:
            reply = self._request({"op": "output"})
        except (WorkerFailure, _OutOfTime):
            return
        printed = sum(v for v in (reply.get("stdout"), reply.get("stderr")) if isinstance(v, int))
        if printed > 2**20:
            self.graded.notes.append(f"The notebook printed {printed / 2**20:.0f} MB; the grader ignores printed "
                                     f"output (it keeps at most 256 KB of it).")

    def _out_of_memory(self, run: CellRun, replay: bool = False) -> None:
        run.status = "memory"
        when = " when the notebook was run again after an earlier failure" if replay else ""
        run.error = f"ran out of memory (more than {self.settings.memory_mb} MB){when}"
        self.graded.add_status("memory")
        self.graded.notes.append(f"{run.cell.label()} {run.error}; the notebook went on without it.")
        self.drop_worker()

    def run_cells(self, cells: list[Cell]) -> None:
        for cell in cells:
            self.runs[cell.index] = CellRun(cell)
        try:
            for cell in cells:
                run = self.runs[cell.index]
                self.ensure_worker()
                try:
                    self._exec(run)
                except WorkerFailure as exc:
                    self._failed(run, exc)
                    continue
                if run.memory:  # a process that hit its memory limit is not to be trusted with more cells
                    self._out_of_memory(run)
                    continue
                self.ran.append(run)
        except _OutOfTime:
            self.graded.add_status("total-timeout")
            self.graded.notes.append(f"The notebook did not finish within {self.settings.total_timeout:g} s in "
                                     f"total; the cells after that were not run.")
        except _OutOfRestarts:
            self.graded.add_status("crashed")
            self.graded.notes.append(f"The notebook was restarted {self.settings.max_restarts} times; the cells "
                                     f"after that were not run.")

    # ---- answers

    def begin_collect(self) -> None:
        """Checking the answers gets a restart budget of its own (each hung or crashing answer uses one)."""
        self.starts = 1 if self.worker is not None else 0

    def collect(self, q: Question, cell: Cell | None, hidden: tuple = ()) -> dict:
        """The plain-data record of ``q``'s answer, as :func:`rlhf_course.checks.collect` would make it
        (``hidden``: the question's hidden cases, run after the public ones)."""
        try:
            if q.kind != "function":
                self.ensure_worker()
                try:
                    rec = self._request({"op": "collect", "name": q.name, "kind": "value"})
                except WorkerFailure as exc:
                    return {"status": "error", "message": self._answer_failure(q, exc)}
                return self._with_reason(q, cell, sanitize_record("value", rec))
            results = []
            delegated: set[str] = set()  # the guarded package functions the answer reached (checks.grade)
            guard_off = False
            cases = case_payload(q) + [{"name": c.name, "args": list(c.args)} for c in hidden]
            for k, case in enumerate(cases):
                self.ensure_worker()
                try:
                    rec = self._request({"op": "collect", "name": q.name, "kind": "function", "args": case["args"],
                                         "guards": list(q.guards)})
                except WorkerFailure as exc:
                    why = self._answer_failure(q, exc)
                    label = "TimeoutError" if exc.kind == "timeout" else "ProcessCrash"
                    results.append({"error": f"{label}: {why}", "error_types": ["GraderStopped"]})
                    skipped = {"error": "NotRun: this case was skipped, since the answer failed on an earlier one",
                               "error_types": ["GraderStopped"]}
                    results += [dict(skipped) for _ in cases[k + 1:]]
                    break
                rec = sanitize_record("function", rec)
                if rec["status"] != "ok":
                    return self._with_reason(q, cell, rec)
                results.append(rec["results"][0])
                delegated.update(h for h in rec.get("delegated", ())
                                 if h in {g.removeprefix("rlhf_course.") for g in q.guards})
                guard_off = guard_off or rec.get("guard_off", False)
            return function_record(results, delegated, guard_off)
        except (_OutOfTime, _OutOfRestarts) as exc:
            if isinstance(exc, _OutOfTime):
                self.graded.add_status("total-timeout")
            why = (f"the submission ran out of its {self.settings.total_timeout:g} s" if isinstance(exc, _OutOfTime)
                   else "the notebook was restarted too many times")
            return {"status": "error", "message": f"not checked: {why}."}

    def _answer_failure(self, q: Question, exc: WorkerFailure) -> str:
        if exc.kind == "timeout":
            self.graded.add_status("timeout")
            msg = f"`{q.name}` did not return within {self.settings.timeout:g} s, and was stopped"
        else:
            self.graded.add_status("crashed")
            msg = f"`{q.name}` crashed the Python process ({exc.detail})"
        self.graded.notes.append(f"{q.id}: {msg}.")
        return msg

    def _with_reason(self, q: Question, cell: Cell | None, rec: dict) -> dict:
        if rec.get("status") != "not-defined":
            return rec
        run = self.runs.get(cell.index) if cell is not None else None
        if cell is None:
            reason = (f"the notebook has no cell for question {q.id} (the grader looks for the name `{q.name}`, "
                      f"defined in the cell marked for {q.id})")
        elif run is not None and run.status in ("timeout", "crashed", "memory"):
            reason = f"{cell.label()}, which answers it, {run.error}"
        elif run is not None and run.status == "error":
            last = (run.error.strip().splitlines() or ["an exception"])[-1]
            reason = f"{cell.label()}, which answers it, raised {last}"
        elif run is not None and run.status == "not-run":
            reason = f"{cell.label()}, which answers it, was not run"
        else:
            reason = f"the grader looks for the name `{q.name}`, as the exercise notebook defines it (renamed?)"
        return {**rec, "reason": reason}

    def close(self) -> None:
        self.drop_worker()


def pick_exercise(nb_exercise: str | None, settings: Settings) -> str:
    """The exercise to grade a notebook as: its metadata, checked against ``--exercise`` and the registry."""
    known = exercise_ids()
    if settings.exercise:
        if nb_exercise and nb_exercise != settings.exercise:
            raise SubmissionError("wrong-exercise", f"this notebook is exercise {nb_exercise}, not exercise "
                                                    f"{settings.exercise}")
        return settings.exercise
    if not nb_exercise:
        raise SubmissionError("unknown-exercise", "the notebook's metadata does not say which exercise it is "
                                                  "(rlhf_course.exercise); start from the exercise notebook, or "
                                                  "grade with --exercise NN")
    if nb_exercise not in known:
        raise SubmissionError("unknown-exercise", f"the notebook says it is exercise {nb_exercise!r}, which does "
                                                  f"not exist (known: {', '.join(known)})")
    return nb_exercise


def grade_notebook(path: Path, name: str, isolation: str, settings: Settings) -> Graded:
    """Grade one submission file; never raises: whatever goes wrong becomes the submission's status."""
    t0 = time.monotonic()
    try:
        return _grade_notebook(path, name, isolation, settings)
    except Exception as exc:  # the grader's own bug: this submission's row says so, the batch goes on
        import traceback

        g = Graded(name=name, path=str(path), status="grader-error", isolation=isolation, score=None,
                   notes=[f"The grader failed on this submission: {type(exc).__name__}: {exc}",
                          traceback.format_exc()[-MAX_STR:]])
        g.seconds = time.monotonic() - t0
        return g


def _grade_notebook(path: Path, name: str, isolation: str, settings: Settings) -> Graded:
    t0 = time.monotonic()
    g = Graded(name=name, path=str(path), isolation=isolation)
    try:
        size = path.stat().st_size
        if size > settings.max_file_mb * 2**20:
            raise SubmissionError("invalid-notebook", f"the file is {size / 2**20:.0f} MB, more than the "
                                                      f"{settings.max_file_mb:g} MB a notebook may have")
        nb = parse_notebook(path.read_bytes(), settings.max_file_mb)
        g.exercise = nb.exercise
        g.exercise = pick_exercise(nb.exercise, settings)
        questions = questions_for(g.exercise)
    except SubmissionError as exc:
        g.status, g.notes = exc.status, [exc.message]
        g.seconds = time.monotonic() - t0
        return g
    except OSError as exc:
        g.status, g.notes = "invalid-notebook", [f"the file could not be read: {exc}"]
        return g
    g.max_score = float(sum(q.points for q in questions))

    cells = code_cells(nb)
    cell_of: dict[str, Cell] = {}
    for c in cells:
        if c.question and c.question not in cell_of:
            cell_of[c.question] = c
    missing = [q.id for q in questions if q.id not in cell_of]
    if missing:
        g.add_status("missing-cells")
        g.notes.append(f"The notebook has no cell marked for {', '.join(missing)}; the grader still looked for "
                       f"the answers by name.")
    if not nb.exercise:
        g.notes.append(f"The notebook's metadata does not say which exercise it is; graded as exercise "
                       f"{g.exercise}.")

    guards = tuple(dict.fromkeys(d for q in questions for d in q.guards))
    session = Session(isolation, settings, t0 + settings.total_timeout, g, guards)
    try:
        session.run_cells(cells)
        session.note_output()
        session.begin_collect()
        for q in questions:
            hidden = hidden_cases(q, settings.seed)
            record = session.collect(q, cell_of.get(q.id), hidden)
            try:
                res = grade(q, record, hidden)
            except Exception as exc:  # the course's bug (e.g. a reference that fails), not the student's
                g.add_status("grader-error")
                g.notes.append(f"{q.id}: the grader failed: {type(exc).__name__}: {exc}"[:MAX_STR])
                res = Result(q.id, q.title, 0.0, q.points, "error", ["The grader could not check this answer."])
            g.results.append(res)
    except WorkerFailure as exc:  # a worker that cannot start: the machine's problem, not the student's
        g.add_status("grader-error")
        g.notes.append(exc.detail)
    finally:
        session.close()
    graded_ids = {r.id for r in g.results}
    for q in questions:
        if q.id not in graded_ids:
            g.results.append(Result(q.id, q.title, 0.0, q.points, "error", ["Not checked: the grader failed."]))
    g.results.sort(key=lambda r: [q.id for q in questions].index(r.id))
    # a grader fault is not a zero: no score, so that the row stands out and --only-failed completes it
    g.score = None if g.status == "grader-error" else round(sum(r.score for r in g.results), 4)
    g.seconds = time.monotonic() - t0
    return g
