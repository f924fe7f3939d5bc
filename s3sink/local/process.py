"""Supervision of the local stack's server processes: ports, pid files, start, stop.

A server runs detached (its own session) so it outlives the ``s3sink local up`` that started
it; its pid is written to a pid file in the state directory. Stopping checks that the pid still
runs *our* command line (a marker such as the state directory's config path), so a recycled pid
of someone else's process is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from s3sink.local.tools import LocalStackError, tail

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` on loopback now (``SO_REUSEADDR``, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def pick_port(preferred: int | None, taken: Sequence[int] = ()) -> int:
    """``preferred`` if it is free (keeps addresses stable across restarts), else a new one."""
    if preferred and preferred not in taken and port_is_free(preferred):
        return preferred
    while True:
        port = free_port()
        if port not in taken:
            return port


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid`` joined by spaces, or None if it does not run (or is a zombie)."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            # The state follows the parenthesised command name: "pid (comm) S ...".
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return None
            return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            return None
    if sys.platform.startswith("linux"):
        return None
    out = subprocess.run(
        ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    line = out.stdout.strip()
    if out.returncode != 0 or not line or line.startswith("Z"):
        return None
    return line.split(None, 1)[1] if " " in line else ""


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (test rigs)."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


class ManagedProcess:
    """One server process of the local stack, tracked by a pid file.

    ``markers`` are substrings of the command line that identify the process as ours;
    they are stored next to the pid so a later ``s3sink local down`` can check them.
    """

    def __init__(self, name: str, run_dir: Path) -> None:
        self.name = name
        self.run_dir = run_dir
        self.pid_path = run_dir / f"{name}.pid"
        self.log_path = run_dir / "logs" / f"{name}.out"
        self._popen: subprocess.Popen[bytes] | None = None

    # -- inspection --------------------------------------------------------------------------

    def recorded(self) -> tuple[int, list[str]] | None:
        data = read_json(self.pid_path)
        pid, markers = data.get("pid"), data.get("markers")
        if not isinstance(pid, int) or not isinstance(markers, list):
            return None
        return pid, [str(m) for m in markers]

    def pid(self) -> int | None:
        """The pid if the recorded process runs and its command line is ours, else None."""
        recorded = self.recorded()
        if recorded is None:
            return None
        pid, markers = recorded
        if self._popen is not None and self._popen.pid == pid and self._popen.poll() is not None:
            return None
        cmdline = _cmdline(pid)
        if cmdline is None or not all(marker in cmdline for marker in markers):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    # -- control -----------------------------------------------------------------------------

    def spawn(
        self,
        argv: Sequence[str],
        *,
        markers: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> int:
        """Start ``argv`` detached, output appended to the log; returns the pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env.update(env or {})
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {' '.join(argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=full_env,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_die_with_parent() if die_with_parent else None,  # noqa: PLW1509
            )
        write_json(self.pid_path, {"pid": self._popen.pid, "markers": list(markers)})
        return self._popen.pid

    def exited(self) -> bool:
        """Whether the process we spawned in this Python process has already exited."""
        return self._popen is not None and self._popen.poll() is not None

    def gone(self) -> bool:
        """Whether the process is no longer there: for one spawned here, its exit status says
        so (its command line may be briefly unreadable while a launcher such as ``java``
        re-executes itself); for one started by an earlier ``up``, its pid and command line."""
        if self._popen is not None:
            return self._popen.poll() is not None
        return not self.running()

    def stop(self, timeout: float = 30.0, *, kill: bool = False) -> bool:
        """Stop our process: SIGTERM (or SIGKILL if ``kill``), SIGKILL after ``timeout``.

        Returns whether a process of ours was running. The pid file is removed either way.
        """
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            self._popen = None
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 10.0):
                raise LocalStackError(f"{self.name} (pid {pid}) did not exit after SIGKILL")
        self.pid_path.unlink(missing_ok=True)
        self._popen = None
        return True

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._popen is not None and self._popen.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._popen.wait(timeout=0.05)
            else:
                _reap(pid)
            if _cmdline(pid) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def failure(self, what: str) -> LocalStackError:
        """An error for a process that died or never became ready, with its log's tail."""
        log_tail = tail(self.log_path)
        detail = f"; last lines of {self.log_path}:\n{log_tail}" if log_tail else ""
        return LocalStackError(f"{self.name} {what}{detail}")


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    process: ManagedProcess,
    what: str,
) -> None:
    """Poll ``ready`` until it is true; fail early if ``process`` exits, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if process.gone():
            raise process.failure("exited before it was ready")
        if time.monotonic() >= deadline:
            raise process.failure(f"did not {what} within {timeout:.0f}s")
        time.sleep(0.1)
