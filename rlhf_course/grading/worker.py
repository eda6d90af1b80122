"""The worker: runs one submission's cells and answers the grader's questions with plain data.

Started by :mod:`rlhf_course.grading.process` as ``python -m rlhf_course.grading.worker REQ_FD RESP_FD``.
It reads requests from ``REQ_FD`` and writes one JSON line per reply to ``RESP_FD`` (see ``protocol``);
its standard output and error are not part of the protocol. Order of events:

1. read the ``config`` message; confine itself (``sandbox``): private root and no capabilities with
   namespaces, resource limits always;
2. import numpy and the question framework, and keep its own references to everything the loop uses,
   before any student code can replace them;
3. say hello (with the checks of the confinement), then serve ``exec`` and ``collect`` requests.

Whatever student code does to this process (replace ``check``, ``grade``, numpy functions, ``json``),
the grader only ever receives data, and compares it with references computed in its own process.
"""
from __future__ import annotations

import os
import sys


class _CappedSink:
    """A write-only byte stream that keeps at most ``limit`` bytes and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.kept, self.dropped = limit, bytearray(), 0

    def write(self, b) -> int:
        n = len(b)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += bytes(b[:room])
        self.dropped += max(0, n - max(room, 0))
        return n


def _capped_stream(limit: int):
    import io

    sink = _CappedSink(limit)

    class Raw(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            return sink.write(b)

    stream = io.TextIOWrapper(io.BufferedWriter(Raw()), encoding="utf-8", errors="replace", write_through=True)
    return stream, sink


class _FakeIPython:
    """``get_ipython()`` in the grader: every method exists and does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def main(argv: list[str]) -> int:
    req_fd, resp_fd = int(argv[1]), int(argv[2])
    if not getattr(sys.flags, "safe_path", False) and sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)  # never import from the working folder
    import json

    rfile = open(req_fd, "rb", buffering=65536, closefd=False)
    config = json.loads(rfile.readline())
    write = os.write
    dumps = json.dumps
    loads = json.loads

    def send(obj: dict) -> None:
        data = (dumps(obj, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[write(resp_fd, data):]

    from . import sandbox

    report = {"isolation": config["isolation"]}
    try:
        if config["isolation"] == "namespaces":
            report["visible"] = sandbox.enter_private_root(config.get("tmp_mb", 64))
            sandbox.drop_capabilities()
        else:
            os.chdir(config["workdir"])
        report["limits"] = sandbox.set_limits(config["memory_mb"], config["cpu_s"], config.get("fsize_mb", 16),
                                              config.get("nproc") if config["isolation"] == "namespaces" else None)
    except Exception as exc:  # report and stop: no student code runs unconfined
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 3

    mpl_dir = os.path.join(os.environ.get("HOME", "/tmp"), ".matplotlib")
    os.makedirs(mpl_dir, exist_ok=True)
    for name, text in config.get("fontlists", {}).items():  # matplotlib's font cache, to skip rebuilding it
        with open(os.path.join(mpl_dir, os.path.basename(name)), "w") as f:
            f.write(text)
    os.environ["MPLCONFIGDIR"] = mpl_dir

    import builtins
    import faulthandler
    import traceback

    faulthandler.enable(file=sys.__stderr__ or 2, all_threads=False)
    __import__("numpy")  # before any student code (every notebook imports it anyway), like the framework below

    import rlhf_course.checks as checks

    collect_cases, to_plain, max_str = checks.collect_cases, checks.to_plain, checks.MAX_STR
    checks.check = lambda *args, **kwargs: None  # the notebook's self-checks: the grader grades instead
    format_exc = traceback.format_exception
    BaseExc, isinstance_, len_, type_ = BaseException, isinstance, len, type

    try:  # the guarded functions' code, taken before a notebook could rebind the names
        guard_table = checks.guard_codes(config.get("guards", []))
    except Exception as exc:  # a registry naming a function that does not exist: the course's bug
        send({"ready": False, "error": f"the guarded functions could not be found: {type(exc).__name__}: {exc}"})
        return 3

    if config["isolation"] == "namespaces":
        report["checks"] = sandbox.verify(config.get("hidden", []), os.path.dirname(checks.__file__))

    out_limit = int(config.get("output_kb", 256)) * 1024
    stdout, out_sink = _capped_stream(out_limit)
    stderr, err_sink = _capped_stream(out_limit)
    sys.stdout, sys.stderr = stdout, stderr
    ns = {"__name__": "__main__", "__builtins__": builtins, "display": lambda *a, **k: None,
          "get_ipython": lambda: _FakeIPython()}

    def error_text(exc: BaseException) -> str:
        try:
            lines = format_exc(type_(exc), exc, exc.__traceback__)
            text = "".join(lines[1:] if len_(lines) > 1 else lines)  # drop "Traceback (most recent call last):"
        except BaseExc:  # a student's exception that cannot even be printed
            text = f"{type_(exc).__name__} (its message could not be shown)"
        return text[-max_str:]

    send({"ready": True, "pid": os.getpid(), **report})
    while True:
        line = rfile.readline()
        if not line:
            return 0
        try:
            msg = loads(line)
        except ValueError:
            return 4
        rid = msg.get("id")
        op = msg.get("op")
        reply: dict
        if op == "exec":
            try:
                where = f"<cell {msg.get('cell')}>"
                try:
                    code = compile(msg["source"], where, "exec")
                except SyntaxError:  # IPython magics or shell lines? then run the cell without them
                    code = None
                    if msg.get("python", msg["source"]) != msg["source"]:
                        try:
                            code = compile(msg["python"], where, "exec")
                        except SyntaxError:
                            pass
                    if code is None:
                        code = compile(msg["source"], where, "exec")  # raises the cell's own SyntaxError
                exec(code, ns)
                reply = {"ok": True}
            except BaseExc as exc:  # SystemExit and KeyboardInterrupt too: the cell failed, the worker lives
                reply = {"ok": False, "error": error_text(exc), "memory": isinstance_(exc, MemoryError)}
        elif op == "collect":
            name = msg["name"]
            try:
                if name not in ns:
                    reply = {"status": "not-defined"}
                elif msg["kind"] == "function":
                    reply = collect_cases(ns[name], [{"args": msg["args"]}], msg.get("guards", ()), guard_table)
                else:
                    reply = {"status": "ok", "value": to_plain(ns[name])}
            except BaseExc as exc:
                reply = {"status": "error", "message": f"checking `{name}` failed: {error_text(exc)}"}
        elif op == "output":
            reply = {"stdout": out_sink.dropped + len_(out_sink.kept), "stderr": err_sink.dropped + len_(err_sink.kept)}
        else:
            reply = {"error": f"unknown request {op!r}"}
        reply["id"] = rid
        try:
            send(reply)
        except (TypeError, ValueError) as exc:  # e.g. a student replaced json.dumps: say so, once
            send({"id": rid, "status": "error", "ok": False, "error": f"reply could not be encoded: {exc}"[:500],
                  "message": "the answer could not be encoded"})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
