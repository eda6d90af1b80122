"""The worker process, seen from the trusted side: start it confined, talk to it over its pipes, time it out,
kill it.

:class:`Worker` starts ``python -m rlhf_course.grading.worker`` with a clean environment (under ``unshare``
where Linux namespaces work), sends it its ``config`` and waits for its hello; :meth:`Worker.request` sends
one request and waits for its reply, raising :class:`WorkerFailure` on a timeout, a crash or a broken
reply. What the replies mean is :mod:`rlhf_course.grading.runner`'s business.
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
from pathlib import Path

from . import protocol
from .settings import Settings


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
