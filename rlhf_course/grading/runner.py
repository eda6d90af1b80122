"""The trusted side of grading one submission: start a confined worker, run the cells, collect, grade.

A cell that runs past the per-cell time limit, or kills the worker (``os._exit``, a segfault, the memory
limit), is marked failed; the worker is replaced by a fresh one, the cells that ran before it are run
again (without the failed one), and the notebook goes on. A question whose answer was defined in the
failed cell then finds no answer, and loses its points; the others keep theirs. The same holds for an
answer that hangs or crashes while it is being called on a case: that case fails, and (since a hung
answer would hang its other cases too) the question's remaining cases are not run.

Only JSON comes back from the worker; it is parsed with a size limit, checked for shape
(:func:`sanitize_record`), and scored by :func:`rlhf_course.checks.grade` here.
"""
from __future__ import annotations

import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import MAX_STR, Question, Result, case_payload, function_record, grade, hidden_cases
from . import protocol
from .source import Cell, SubmissionError, code_cells, parse_notebook, python_source

# Statuses of a submission, most serious first (the row shows the most serious that happened).
STATUSES = ("grader-error", "invalid-notebook", "unknown-exercise", "wrong-exercise", "total-timeout",
            "crashed", "timeout", "memory", "missing-cells", "ok")
NOT_GRADED = ("grader-error", "invalid-notebook", "unknown-exercise", "wrong-exercise")


@dataclass
class Settings:
    """Limits and choices of a grading run (the ``grade`` command's options)."""

    timeout: float = 60.0  # seconds per cell, and per call of an answer on one case
    total_timeout: float = 600.0  # seconds per submission, everything included
    memory_mb: int = 2048  # address space of the worker
    isolation: str = "auto"  # "auto", "namespaces" or "rlimits"
    exercise: str | None = None  # grade every submission as this exercise (else: its metadata)
    max_restarts: int = 8  # fresh workers per submission after a hang or crash
    startup_timeout: float = 60.0  # for a worker to start (no student code runs before it is ready)
    max_file_mb: float = 50.0
    tmp_mb: int = 64  # the worker's private /tmp (namespaces)
    hidden: tuple = ()  # paths the worker must not see: the submissions, the output folder
    scratch: str | None = None  # where the grader keeps its temporary files
    seed: int = 0  # draws the questions' hidden cases (checks.hidden_cases): the same seed, the same cases


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
# the worker process


class WorkerFailure(Exception):
    """A request got no reply: ``kind`` is ``timeout``, ``total-timeout``, ``crashed`` or ``protocol``."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def unshare_path() -> str | None:
    return shutil.which("unshare") if sys.platform.startswith("linux") else None


def _fontlists() -> dict:
    """matplotlib's font cache files, handed to each worker so that it need not rebuild them."""
    home = Path.home()
    dirs = [os.environ.get("MPLCONFIGDIR"), os.environ.get("XDG_CACHE_HOME") and
            os.path.join(os.environ["XDG_CACHE_HOME"], "matplotlib"), home / ".cache" / "matplotlib",
            home / ".matplotlib"]
    out = {}
    for d in dirs:
        if d and Path(d).is_dir():
            for f in sorted(Path(d).glob("fontlist-v*.json")):
                if f.stat().st_size < 2**20:
                    out.setdefault(f.name, f.read_text())
    return out


_FONTLISTS: dict | None = None


def _package_path_env() -> dict:
    """PYTHONPATH for the worker, only when this package is imported from a plain checkout (not installed)."""
    import importlib.metadata

    import rlhf_course

    try:
        importlib.metadata.distribution("rlhf-course")
        return {}  # installed (editable or not): the worker's Python finds it as this one does
    except importlib.metadata.PackageNotFoundError:
        return {"PYTHONPATH": str(Path(rlhf_course.__file__).resolve().parent.parent)}


_LIVE: set = set()  # workers running now, to kill them all on an interrupt
_LIVE_LOCK = threading.Lock()


_STOPPING = threading.Event()  # set on an interrupt: no new workers


def kill_all_workers() -> None:
    """Stop every running worker and refuse to start new ones (on an interrupt)."""
    _STOPPING.set()
    with _LIVE_LOCK:
        live = list(_LIVE)
    for w in live:
        w.kill()


class Worker:
    """One worker process and its two pipes."""

    def __init__(self, isolation: str, settings: Settings, guards: tuple[str, ...] = ()):
        global _FONTLISTS
        if _STOPPING.is_set():
            raise WorkerFailure("startup", "grading was interrupted")
        if _FONTLISTS is None:
            _FONTLISTS = _fontlists()
        self.isolation = isolation
        self.workdir = None
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        py = [sys.executable, "-s", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])
        cmd = py + ["-m", "rlhf_course.grading.worker", str(req_r), str(resp_w)]
        if isolation == "namespaces":
            cmd = [unshare_path() or "unshare", "--user", "--map-root-user", "--mount", "--net", "--pid",
                   "--fork", "--kill-child"] + cmd
            home, cwd = "/tmp", "/"
        else:
            self.workdir = tempfile.mkdtemp(prefix="rlhf-worker-", dir=settings.scratch)
            home = cwd = self.workdir
        env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
               "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1",
               **_package_path_env()}
        self.stderr = tempfile.TemporaryFile(dir=settings.scratch)
        self.buf = b""
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                         pass_fds=(req_r, resp_w), start_new_session=True, env=env, cwd=cwd)
        finally:
            os.close(req_r)
            os.close(resp_w)
        with _LIVE_LOCK:
            _LIVE.add(self)
        os.set_blocking(self.req_w, False)
        config = {"isolation": isolation, "memory_mb": settings.memory_mb, "workdir": self.workdir,
                  "cpu_s": int(math.ceil(settings.total_timeout)) + 10, "fsize_mb": 16, "nproc": 256,
                  "tmp_mb": settings.tmp_mb, "hidden": [str(p) for p in settings.hidden], "fontlists": _FONTLISTS,
                  "guards": list(guards)}  # resolved by the worker before any student code runs
        deadline = time.monotonic() + settings.startup_timeout
        try:
            self._send(config, deadline)
            self.hello = self._receive(deadline)
        except WorkerFailure as exc:
            self.kill()
            raise WorkerFailure("startup", f"the grader's worker did not start: {exc.detail}") from None
        if not self.hello.get("ready"):
            self.kill()
            raise WorkerFailure("startup", f"the grader's worker could not confine itself: "
                                           f"{self.hello.get('error', '?')}")
        self.start_seconds = time.monotonic() - self.started
        self.next_id = 0

    # ---- pipes

    def _wait(self, fd: int, event: int, deadline: float, what: str) -> bool:
        """Wait until ``fd`` is ready (poll, so any descriptor number works); False on a dead worker."""
        poller = select.poll()
        poller.register(fd, event)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailure("timeout", f"no {what} in time")
            if poller.poll(min(left, 0.5) * 1000):
                return True
            if self.proc.poll() is not None:
                return bool(poller.poll(0))  # dead: whatever it wrote before dying can still be read

    def _send(self, msg: dict, deadline: float) -> None:
        data = protocol.encode(msg)
        while data:
            if not self._wait(self.req_w, select.POLLOUT, deadline, "room to send a request"):
                raise WorkerFailure("crashed", self.death())
            try:
                data = data[os.write(self.req_w, data):]
            except BlockingIOError:
                continue
            except OSError:  # EPIPE: the worker is gone
                raise WorkerFailure("crashed", self.death()) from None

    def _receive(self, deadline: float) -> dict:
        while b"\n" not in self.buf:
            if not self._wait(self.resp_r, select.POLLIN, deadline, "reply"):
                raise WorkerFailure("crashed", self.death())
            chunk = os.read(self.resp_r, 1 << 20)
            if not chunk:
                raise WorkerFailure("crashed", self.death())
            self.buf += chunk
            if len(self.buf) > protocol.MAX_MESSAGE and b"\n" not in self.buf:
                raise WorkerFailure("protocol", f"a reply of more than {protocol.MAX_MESSAGE // 2**20} MB")
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            return protocol.decode(line)
        except protocol.ProtocolError as exc:
            raise WorkerFailure("protocol", str(exc)) from None

    def request(self, msg: dict, timeout: float) -> dict:
        """Send one request; the reply, or :class:`WorkerFailure` after ``timeout`` seconds or a crash."""
        self.next_id += 1
        msg = {**msg, "id": self.next_id}
        deadline = time.monotonic() + max(timeout, 0.0)
        self._send(msg, deadline)
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self.next_id:
                return reply
            # A reply to something else: student code wrote into the pipe. Not ours; keep reading.

    # ---- end

    def death(self) -> str:
        """How the worker died, for the feedback: exit code or signal, and the end of its error output."""
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the process stopped answering"
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"signal {-code}"
        elif code is not None and code > 128 and code - 128 in signal.valid_signals():
            how = f"killed by signal {signal.Signals(code - 128).name}"
        else:
            how = f"exited with code {code}"
        tail = self.stderr_tail()
        if "Fatal Python error" in tail:
            how += ": " + next(ln for ln in tail.splitlines() if "Fatal Python error" in ln).strip()
        elif signal.SIGXCPU.name in how:
            how += " (CPU time limit)"
        return how

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - n))
            return self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        """Kill the worker's whole process group (with namespaces: its whole process tree) and clean up."""
        with _LIVE_LOCK:
            if self not in _LIVE:
                return
            _LIVE.discard(self)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self.req_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.req_w = self.resp_r = -1
        self.stderr.close()
        if self.workdir:
            _rmtree(self.workdir)


def _rmtree(path: str) -> None:
    def onerror(func, p, exc):
        try:
            os.chmod(p if os.path.isdir(p) else os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


def probe_isolation(settings: Settings) -> tuple[str, str]:
    """The isolation this machine allows, as ``(mode, explanation)``; tried once per run.

    ``namespaces`` needs the ``unshare`` command, unprivileged user namespaces, and every check of the
    worker's confinement (:func:`rlhf_course.grading.sandbox.verify`) to hold.
    """
    if settings.isolation == "rlimits":
        return "rlimits", "chosen with --isolation rlimits"
    reason = None
    if not unshare_path():
        reason = "no unshare command here: it is part of Linux's util-linux"
    else:
        try:
            w = Worker("namespaces", settings)
        except WorkerFailure as exc:
            reason = exc.detail
        else:
            failed = [k for k, ok in w.hello.get("checks", {}).items() if not ok]
            w.kill()
            if failed or not w.hello.get("checks"):
                reason = "the confinement did not hold: " + ", ".join(failed or ["no checks reported"])
    if reason is None:
        return "namespaces", "Linux namespaces"
    if settings.isolation == "namespaces":
        raise RuntimeError(f"--isolation namespaces is not possible here: {reason}")
    return "rlimits", reason


def describe_isolation(mode: str, why: str, settings: Settings) -> str:
    limits = (f"limits: {settings.memory_mb} MB of memory, {settings.timeout:g} s per cell and per answer, "
              f"{settings.total_timeout:g} s per submission")
    if mode == "namespaces":
        return ("Isolation: Linux namespaces (no network; a private, read-only file system holding only "
                f"Python and the course package; its own process tree; no capabilities); {limits}")
    return (f"Isolation: resource limits only ({why}): the student's code could use the network and read "
            f"or write the grader's files; {limits}")


# --------------------------------------------------------------------------------------------------
# checking the worker's replies: plain data of the expected shape, nothing else


def valid_plain(p, depth: int = 0) -> bool:
    """Is ``p`` plain data as :func:`rlhf_course.checks.to_plain` makes it (and nothing else)?"""
    if depth > 25 or not isinstance(p, dict):
        return False
    t, v = p.get("t"), p.get("v")
    if t in ("none", "ellipsis"):
        return True
    if t == "bool":
        return isinstance(v, bool)
    if t == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "str":
        return isinstance(v, str) and len(v) <= MAX_STR
    if t == "object":
        return isinstance(p.get("type"), str)
    if t == "array":
        shape = p.get("shape")
        if not (isinstance(shape, list) and len(shape) <= 32 and isinstance(v, list) and len(v) <= 100_000
                and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape)):
            return False
        return math.prod(shape) == len(v) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    if t == "list":
        return isinstance(v, list) and len(v) <= 100_000 and all(valid_plain(x, depth + 1) for x in v)
    if t == "dict":
        return (isinstance(v, dict) and len(v) <= 1000
                and all(isinstance(k, str) and valid_plain(x, depth + 1) for k, x in v.items()))
    return False


def _case_result(r) -> dict:
    if isinstance(r, dict) and "error" in r:
        types = r.get("error_types")
        types = [t[:100] for t in types if isinstance(t, str)][:50] if isinstance(types, list) else []
        return {"error": str(r["error"])[:MAX_STR], "error_types": types}
    if isinstance(r, dict) and valid_plain(r.get("value")):
        return {"value": r["value"]}
    return {"error": "the answer's value could not be read", "error_types": []}


def sanitize_record(kind: str, rec: dict) -> dict:
    """A worker's reply to ``collect``, reduced to exactly what :func:`rlhf_course.checks.grade` reads."""
    status = rec.get("status")
    if status in ("missing", "not-callable", "not-defined"):
        return {"status": status, "type": str(rec.get("type", "?"))[:200]}
    if status == "error":
        return {"status": "error", "message": str(rec.get("message", "the answer could not be checked"))[:MAX_STR]}
    if status == "ok" and kind == "function":
        results = rec.get("results")
        if isinstance(results, list) and len(results) == 1:
            out = {"status": "ok", "results": [_case_result(results[0])]}
            hit = rec.get("delegated")
            if isinstance(hit, list) and hit and all(isinstance(h, str) for h in hit):
                out["delegated"] = [h[:200] for h in hit[:8]]
            if rec.get("guard_off") is True:
                out["guard_off"] = True
            return out
    elif status == "ok" and valid_plain(rec.get("value")):
        return {"status": "ok", "value": rec["value"]}
    return {"status": "error", "message": "the grader could not read the answer's value"}


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
    from ..questions import exercise_ids

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
    from ..questions import questions_for

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
