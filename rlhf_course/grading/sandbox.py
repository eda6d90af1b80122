"""How the worker confines itself, before any student code runs (standard library only).

Two levels, chosen by the grader and reported in every result:

``namespaces`` (Linux, where unprivileged user namespaces work)
    The grader starts the worker under ``unshare --user --map-root-user --mount --net --pid --fork``.
    The worker, root only inside its own user namespace, then builds a private file system: a fresh
    tmpfs becomes ``/``, holding read-only bind mounts of exactly what Python needs (``/usr``, the
    Python installation, the virtual environment, the ``rlhf_course`` package, a few files of ``/etc``),
    a new ``/proc`` for its own process tree, a small writable tmpfs ``/tmp`` and a minimal ``/dev``;
    ``pivot_root`` moves into it and the old root is detached, so nothing else (other submissions, the
    output folder, home folders) exists any more. It then drops every capability (bounding set too) and
    sets ``no_new_privs``, so it can no longer mount, unmount or remount anything. The network namespace
    has only a loopback interface, down: every connection fails.
``rlimits``
    Resource limits only (memory, CPU time, file size, no core dumps), in a new session whose process
    group the grader kills; the student's code runs as the grader's user, in a private working folder.

Resource limits are set in both cases: address space and data (``memory_mb``), CPU seconds, size of any
written file, open files, and (with namespaces) the number of processes.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import socket
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
PR_SET_DUMPABLE = 4
_PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41,
               "ppc64le": 203, "ppc64": 203, "s390x": 217, "i686": 217, "i386": 217}

# Top-level system paths made visible (read-only) when they exist; symlinks (merged /usr) are recreated.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/fonts", "/etc/mime.types")
DEV_NODES = ("null", "zero", "full", "random", "urandom")
NEW_ROOT = "/tmp"  # where the new root's tmpfs is mounted before pivot_root (in the private mount namespace)


class SandboxError(OSError):
    """A step of the confinement failed; the grader then reports it (or falls back to rlimits)."""


_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def _fail(what: str) -> None:
    e = ctypes.get_errno()
    raise SandboxError(e, f"{what}: {os.strerror(e)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _lib().mount(_b(src), _b(target), _b(fstype), flags, _b(data)) != 0:
        _fail(f"mount {src or ''} on {target}")


def prctl(option: int, arg: int = 0) -> int:
    return _lib().prctl(option, arg, 0, 0, 0)


def _statvfs_flags(path: str) -> int:
    """The per-mount flags of ``path``'s mount that a read-only bind remount must keep (they may be locked)."""
    f = os.statvfs(path).f_flag
    flags = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if f & st:
            flags |= ms
    return flags


def python_paths() -> list[str]:
    """What the worker's Python needs to see: its installation, its environment, its ``sys.path``, the package."""
    import importlib.util

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    spec = importlib.util.find_spec("rlhf_course")
    package = list(spec.submodule_search_locations or []) if spec is not None else []
    # The folder holding the package (a checkout on PYTHONPATH) is not shown whole: only the package is.
    holders = {os.path.normpath(os.path.dirname(p)) for p in package}
    paths.update(p for p in sys.path if p and os.path.isabs(p) and os.path.normpath(p) not in holders)
    paths.update(package)
    return _outermost(p for p in paths if os.path.exists(p))


def _outermost(paths) -> list[str]:
    """Absolute, normalized paths, dropping any that lies inside another."""
    out: list[str] = []
    for p in sorted({os.path.normpath(os.path.abspath(p)) for p in paths}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return sorted(out)


def enter_private_root(tmp_mb: int = 64) -> list[str]:
    """Build the private read-only root described in the module docstring and ``pivot_root`` into it.

    Must run as root of a fresh user + mount namespace. Returns the paths made visible.
    """
    machine = platform.machine().lower()
    if machine not in _PIVOT_ROOT:
        raise SandboxError(errno.ENOSYS, f"pivot_root: unknown system call number on {machine}")
    visible = [p for p in python_paths() if not any(p == s or p.startswith(s + "/") for s in SYSTEM_PATHS)]
    binds = {}  # path -> O_PATH descriptor, opened before anything is hidden
    links = {}
    for p in SYSTEM_PATHS:
        if os.path.islink(p):
            links[p] = os.readlink(p)
        elif os.path.isdir(p):
            binds[p] = None
    for p in visible + [e for e in ETC_FILES if os.path.exists(e)] + [f"/dev/{d}" for d in DEV_NODES]:
        binds[p] = None
    for p in list(binds):
        try:
            binds[p] = os.open(p, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            del binds[p]
    flags = {p: _statvfs_flags(p) for p in binds}

    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = NEW_ROOT
    _mount("rlhf-grader-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for p, target in links.items():
        os.symlink(target, root + p)
    os.makedirs(root + "/tmp")  # the private /tmp first, so that a Python installed under /tmp shows on top of it
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(tmp_mb)}m,mode=1777")
    for p, fd in sorted(binds.items()):
        dest = root + p
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(dest, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            open(dest, "w").close()
        _mount(f"/proc/self/fd/{fd}", dest, None, MS_BIND)
        _mount(None, dest, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | flags[p])
        os.close(fd)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/etc", exist_ok=True)
    with open(root + "/etc/passwd", "w") as f:
        f.write("root:x:0:0:root:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    with open(root + "/etc/group", "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    with open(root + "/etc/hosts", "w") as f:
        f.write("127.0.0.1 localhost\n")
    for d in ("proc", "dev/shm", ".old-root"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
    _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16m,mode=1777")
    try:  # a new /proc showing only this worker's own process tree (allowed while the old /proc is mounted)
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SandboxError:
        pass  # left empty: Python runs without /proc

    os.chdir(root)
    if _lib().syscall(_PIVOT_ROOT[machine], b".", b".old-root") != 0:
        _fail("pivot_root")
    os.chdir("/")
    if _lib().umount2(b"/.old-root", MNT_DETACH) != 0:
        _fail("umount old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir("/tmp")
    return sorted(list(binds) + list(links))


def drop_capabilities() -> None:
    """Drop every capability, the bounding set included, and forbid regaining any (``no_new_privs``)."""
    for cap in range(64):
        if prctl(PR_CAPBSET_DROP, cap) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the last capability this kernel knows
            _fail(f"drop capability {cap} from the bounding set")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, all zero
    if _lib().capset(ctypes.byref(header), data) != 0:
        _fail("capset")
    if prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        _fail("no_new_privs")


def set_limits(memory_mb: int, cpu_s: int, fsize_mb: int, nproc: int | None) -> list[str]:
    """Hard resource limits for this process and everything it starts (they cannot be raised again).

    Returns the names of the limits that hold."""
    import signal

    mem = int(memory_mb) * 2**20
    limits = [(resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem), (resource.RLIMIT_CPU, int(cpu_s)),
              (resource.RLIMIT_FSIZE, int(fsize_mb) * 2**20), (resource.RLIMIT_CORE, 0),
              (resource.RLIMIT_NOFILE, 256)]
    if nproc:
        limits.append((resource.RLIMIT_NPROC, int(nproc)))
    names = {resource.RLIMIT_AS: "address space", resource.RLIMIT_DATA: "data", resource.RLIMIT_CPU: "CPU time",
             resource.RLIMIT_FSIZE: "file size", resource.RLIMIT_CORE: "core dumps",
             resource.RLIMIT_NOFILE: "open files", resource.RLIMIT_NPROC: "processes"}
    held = []
    for which, value in limits:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
            held.append(names[which])
        except (ValueError, OSError):  # e.g. macOS refuses RLIMIT_AS; the others still hold
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long file fails with EFBIG instead of killing
    return held


def _fails(action) -> bool:
    try:
        action()
    except OSError:
        return True
    return False


def _try_create(folder: str) -> None:
    path = os.path.join(folder, f".rlhf-grader-probe-{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.unlink(path)


def _connect(host: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect((host, port))
    finally:
        s.close()


def verify(hidden: list[str], package_dir: str) -> dict:
    """Check that the confinement holds, from inside; every value must be True."""
    status = open("/proc/self/status").read() if os.path.exists("/proc/self/status") else ""
    cap_eff = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("CapEff:")), None)
    return {
        "root read-only": _fails(lambda: _try_create("/")),
        "package read-only": _fails(lambda: _try_create(package_dir)),
        "python read-only": _fails(lambda: _try_create(sys.prefix)) and _fails(lambda: _try_create(sys.base_prefix)),
        "other files hidden": not any(os.path.lexists(p) for p in hidden),
        "no network": socket.if_nameindex() == [(1, "lo")] and _fails(lambda: _connect("127.0.0.1", 9))
        and _fails(lambda: _connect("192.0.2.1", 80)),
        "own process tree": os.getpid() == 1,
        "no capabilities": cap_eff is not None and int(cap_eff, 16) == 0,
        "cannot remount": _fails(lambda: _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)),
    }
