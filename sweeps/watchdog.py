"""The local Ray's watchdog: no process of the Ray a sweep's driver started outlives that driver, even a ``kill -9``-ed
one (:class:`RayWatchdog`, started by :class:`sweeps.session.RaySession`)."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from sweeps import _ray_compat

REPO_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)

OWNER_ENV = "BAP_SWEEPS_RAY_OWNER"  # set, to the watchdog's token, in the environment the local Ray starts with
_TERM_WAIT_S = 3.0  # after SIGTERM, before SIGKILL
_STOP_GRACE_S = 5.0  # after a normal shutdown: Ray's processes exit by themselves first
_POLL_S = 0.5  # how often the watchdog checks that the driver still runs (it hears of its death at once otherwise)
_watchdogs: list[subprocess.Popen] = []  # reaped when the next one starts


class RayWatchdog:
    """A small process that outlives the driver by moments: once the driver is gone -- even ``kill -9``-ed -- it
    ends every process of the local Ray that driver started, and exits.

    Ray ties its GCS server, raylet and log monitor to the driver (``PR_SET_PDEATHSIG``) and its workers to the
    raylet, but its dashboard and runtime-env agents (~220 MB) only notice the dead raylet, and then first try to
    tell the GCS -- dead too -- and hang there for about a minute (``publish_error_to_driver``'s 60 s timeout in
    ``ray._private.process_watcher.report_raylet_error_logs``).

    The driver holds the write end of a pipe the watchdog reads: EOF without a ``stop`` line (or the watchdog's
    parent changing) means the driver is gone. The processes of *that* Ray are those started with
    ``$BAP_SWEEPS_RAY_OWNER`` set to this watchdog's token (:meth:`marking`: the GCS, the raylet and what it starts,
    their children), and Ray processes (``ray::*`` titles, programs of the ``ray`` package) that have a file, their
    working folder or an argument in that Ray's session directory (the agents, whose titles overwrite the
    environment ``/proc`` shows): the one the driver reports (:meth:`watch_session`), or, if it died inside
    ``ray.init``, one it created since (:func:`sweeps._ray_compat.session_dir_pattern`). Nothing of another Ray (a
    ``ray start`` cluster, another sweep's) has either; nothing of another user is looked at. They get SIGTERM,
    then SIGKILL. After a normal shutdown (:meth:`stop`) the watchdog gives Ray's own shutdown a few seconds, ends
    any leftover the same way, and exits. Linux only (``/proc``); elsewhere :meth:`start` returns None.
    """

    def __init__(self, process: subprocess.Popen, write_fd: int, token: str) -> None:
        self.process = process
        self.token = token
        self._write_fd: int | None = write_fd

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls) -> RayWatchdog | None:
        """Start a watchdog for this process (None where it cannot run: not Linux, or it failed to start)."""
        if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self/fd"):
            return None
        import ray

        _watchdogs[:] = [p for p in _watchdogs if p.poll() is None]
        token = f"{os.getpid()}-{uuid.uuid4().hex}"
        pattern = _ray_compat.session_dir_pattern(os.getpid()) or ""
        env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(
            [str(REPO_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]))
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", "import sys; from sweeps.watchdog import watchdog_main; watchdog_main(sys.argv[1:])",
                 str(read_fd), str(os.getpid()), token, pattern, os.path.dirname(os.path.abspath(ray.__file__)),
                 repr(time.time())],
                pass_fds=(read_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=env, start_new_session=True)  # its own session: a Ctrl-C or SIGHUP to the driver's group spares it
        except OSError as exc:
            os.close(write_fd)
            logger.warning("no watchdog for the local Ray (%s): a driver killed with SIGKILL may leave Ray's agents "
                           "running for a minute", exc)
            return None
        finally:
            os.close(read_fd)
        _watchdogs.append(process)
        return cls(process, write_fd, token)

    @contextlib.contextmanager
    def marking(self) -> Iterator[None]:
        """Around the local ``ray.init``: the processes it starts (and theirs) carry this watchdog's token."""
        saved = os.environ.get(OWNER_ENV)
        os.environ[OWNER_ENV] = self.token
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(OWNER_ENV, None)
            else:
                os.environ[OWNER_ENV] = saved

    def watch_session(self, session_dir: str | None) -> None:
        """Tell the watchdog the session directory of the Ray this driver started."""
        if session_dir:
            self._send(f"session {session_dir}")

    def stop(self) -> None:
        """After a normal shutdown of that Ray: the watchdog ends leftovers, if any, and exits (idempotent)."""
        self._send("stop")
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    def _send(self, line: str) -> None:
        if self._write_fd is None:
            return
        try:
            os.write(self._write_fd, (line + "\n").encode())
        except OSError as exc:  # the watchdog died: nothing to tell
            logger.warning("the local Ray's watchdog is gone: %s", exc)


def watchdog_main(argv: list[str]) -> None:
    """The watchdog process (:class:`RayWatchdog`): ``READ_FD DRIVER_PID TOKEN SESSION_PATTERN RAY_PACKAGE_DIR
    STARTED`` (the driver's clock when it started the watchdog, before its ``ray.init``)."""
    read_fd, driver_pid, token, pattern, ray_dir = int(argv[0]), int(argv[1]), argv[2], argv[3], argv[4]
    started = float(argv[5])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    sessions: set[str] = set()
    stopped, buffered = False, b""
    while not stopped:
        ready, _, _ = select.select([read_fd], [], [], _POLL_S)
        if not ready:
            if os.getppid() != driver_pid:
                break  # the driver died (a child it forked may still hold the pipe)
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break  # the driver died (or closed the pipe without a stop)
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            command, _, arg = line.decode(errors="replace").partition(" ")
            if command == "session" and arg:
                sessions.add(os.path.normpath(arg))
            stopped |= command == "stop"

    def targets() -> dict[int, int]:
        dirs = set(sessions)
        # The session folders this driver created since the watchdog started, in case it died inside ray.init; not
        # after a normal stop: the driver lives on and may already have started another Ray.
        for path in glob.glob(pattern) if pattern and not stopped else []:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ctime >= started - 1:
                    dirs.add(os.path.normpath(path))
        return ray_processes(token, dirs, ray_dir, exclude={os.getpid(), driver_pid})

    end_processes(targets, grace=_STOP_GRACE_S if stopped else 0.0)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of process ``pid`` from ``/proc/<pid>/stat``, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _in_dirs(path: str, dirs: Iterable[str]) -> bool:
    return any(path == d or path.startswith(d + os.sep) for d in dirs)


def ray_processes(token: str, session_dirs: Iterable[str], ray_dir: str, exclude: Iterable[int] = ()) -> dict[int, int]:
    """The live processes of this user that belong to the Ray marked with ``token`` or using ``session_dirs`` (see
    :class:`RayWatchdog`), as ``{pid: start time}``."""
    marker = f"{OWNER_ENV}={token}".encode()
    dirs = tuple(session_dirs)
    ray_prefix = os.path.join(ray_dir, "").encode()
    skip, uid = set(exclude), os.getuid()
    found: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        pid, proc = int(name), f"/proc/{name}"
        try:
            if os.stat(proc).st_uid != uid:
                continue
            stat = _stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            with open(f"{proc}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found[pid] = stat[1]
                    continue
            if not dirs:
                continue
            with open(f"{proc}/cmdline", "rb") as f:
                args = [a for a in f.read().split(b"\0") if a]
            if not args or not (args[0].startswith(b"ray::") or any(a.startswith(ray_prefix) for a in args)):
                continue
            used = [os.readlink(f"{proc}/cwd")]
            for fd in os.listdir(f"{proc}/fd"):
                with contextlib.suppress(OSError):
                    used.append(os.readlink(f"{proc}/fd/{fd}"))
            text = [a.decode(errors="replace") for a in args]
            if any(_in_dirs(p, dirs) for p in used) or any(d in a for a in text for d in dirs):
                found[pid] = stat[1]
        except OSError:  # gone, or not ours to read
            continue
    return found


def _alive(processes: Mapping[int, int]) -> dict[int, int]:
    alive = {}
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start and stat[0] not in ("Z", "X"):
            alive[pid] = start
    return alive


def end_processes(find: Callable[[], dict[int, int]], grace: float = 0.0) -> None:
    """End the processes ``find()`` returns (``{pid: start time}``): wait up to ``grace`` seconds for them to exit,
    then SIGTERM, then SIGKILL; look again (a process may have started meanwhile) until none is left."""
    deadline = time.monotonic() + grace
    found = find()
    while found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = _alive(found) or find()
    for _ in range(3):
        if not found:
            return
        for sig, wait in ((signal.SIGTERM, _TERM_WAIT_S), (signal.SIGKILL, _TERM_WAIT_S)):
            for pid in _alive(found):
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            until = time.monotonic() + wait
            while (found := _alive(found)) and time.monotonic() < until:
                time.sleep(0.1)
            if not found:
                break
        found = find()
