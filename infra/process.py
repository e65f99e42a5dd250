"""Process plumbing shared by the servers: pid files, ports, detached spawning, stopping."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from infra.errors import InfraError


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process."""
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it happens to be our own exited child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` (empty if unknown)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    """True if a server could listen on host:port right now.

    SO_REUSEADDR matches what Java and PostgreSQL do, so connections lingering in
    TIME_WAIT from a previous run do not count as "taken".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def require_free_port(host: str, port: int, server: str, env_var: str) -> None:
    if not port_free(host, port):
        raise InfraError(
            f"cannot start {server}: port {host}:{port} is already in use by another process "
            f"(see `ss -ltnp 'sport = :{port}'`, or set {env_var} to a free port)"
        )


# The shell starts the server in the background and prints its pid, then exits. The server
# is thus re-parented to init instead of staying our child: nothing has to reap it later
# (no zombies, no "subprocess still running" warnings in a long-lived pytest process).
_DETACH_SCRIPT = '"$@" >>"$0" 2>&1 </dev/null & echo $!'


def spawn_detached(
    cmd: Sequence[str], log_file: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start ``cmd`` in its own session, output appended to ``log_file``; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        shell = subprocess.run(
            ["/bin/sh", "-c", _DETACH_SCRIPT, str(log_file), *cmd],
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"could not start {cmd[0]}: {exc}") from exc
    try:
        return int(shell.stdout.strip())
    except ValueError:
        raise InfraError(
            f"could not start {cmd[0]}: {shell.stderr.strip() or 'no pid reported'}"
        ) from None


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, 10):
        raise InfraError(f"process {pid} did not exit even after SIGKILL")


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or '' if it cannot be read."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_tails(*paths: Path, lines: int = 40) -> str:
    """Tails of several logs, each under a header naming the file (empty ones skipped)."""
    parts = []
    for path in paths:
        text = tail(path, lines)
        if text.strip():
            parts.append(f"--- last lines of {path} ---\n{text}")
    return "\n".join(parts)


def run(
    cmd: Sequence[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; raise InfraError (with its output) if it fails.

    With ``log_file`` the output goes there (appended) instead of being captured.
    """
    try:
        if log_file is None:
            result = subprocess.run(
                list(cmd),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            output = (result.stdout + result.stderr).strip()
        else:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("a") as log:
                log.write(f"\n$ {' '.join(cmd)}\n")
                log.flush()
                result = subprocess.run(
                    list(cmd),
                    cwd=cwd,
                    env=None if env is None else dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            output = tail(log_file, 30)
    except FileNotFoundError as exc:
        raise InfraError(f"{what} failed: {cmd[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"{what} timed out after {timeout:.0f} s") from exc
    if result.returncode != 0:
        where = f"; full output in {log_file}" if log_file else ""
        raise InfraError(f"{what} failed (exit code {result.returncode}){where}", details=output)
    return result


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock so two concurrent ``up``/``down`` calls do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
