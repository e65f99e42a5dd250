"""A private PostgreSQL cluster for this checkout, listening on 127.0.0.1 only.

``initdb`` and ``postgres`` refuse to run as root, so as root they run as the ``postgres``
system user (created by Debian's packages) via ``runuser``. That user must be able to reach
the data directory; when the repo lives somewhere it cannot traverse (e.g. under /root, mode
700) the cluster goes to ``/var/tmp/perisai-postgres-<hash>/`` and ``.infra/postgres``
becomes a symlink to it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from infra.aio import run_sync
from infra.console import progress
from infra.errors import InfraError
from infra.paths import HOST, Settings
from infra.process import (
    cmdline,
    log_tails,
    pid_alive,
    port_open,
    require_free_port,
    run,
    terminate,
)
from infra.system import apt_install, as_user, is_root

SUPERUSER = "postgres"
ROLE = "perisai"
PASSWORD = "perisai"
DATABASE = "perisai"
SERVICE_ROLES = ("perisai_registration", "perisai_coverage", "perisai_notifications")
"""Each service's runtime role (LOGIN, nothing else; password = its name): the schema
owner (ROLE) grants it what it may do in its own schema when it migrates."""
PREFERRED_MAJOR = 15
OS_USER = "postgres"
"""The system account that runs the server when we are root."""

START_TIMEOUT = 60
STOP_TIMEOUT = 30


@dataclass(frozen=True)
class Layout:
    """Where the cluster lives: ``root`` is the real directory behind ``.infra/postgres``."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "postgres.log"


def layout(settings: Settings) -> Layout:
    """The cluster's directories (following the /var/tmp symlink if there is one)."""
    return Layout(settings.postgres_dir.resolve())


# Binaries ---------------------------------------------------------------------------------


def _major(bin_dir: Path) -> int:
    try:
        return int(bin_dir.parent.name)
    except ValueError:
        return 0


def _candidate_bin_dirs() -> list[Path]:
    dirs = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        other = Path(pg_ctl).resolve().parent
        if (other / "postgres").is_file() and other not in dirs:
            dirs.append(other)
    return dirs


def _data_major(data: Path) -> int | None:
    try:
        return int((data / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return None


def find_bin_dir(settings: Settings, data: Path) -> Path:
    """The server binaries to use, installing the Debian packages when root and missing.

    An existing cluster needs the major version that created it; a new one gets
    PostgreSQL 15 when available, else the newest installed version.
    """
    dirs = _candidate_bin_dirs()
    if not dirs:
        apt_install(
            ["postgresql"],
            "postgres: the PostgreSQL server (/usr/lib/postgresql/*/bin/postgres) is not installed",
            settings.state_dir / "apt.log",
        )
        dirs = _candidate_bin_dirs()
        if not dirs:
            raise InfraError("installed postgresql but found no /usr/lib/postgresql/*/bin/postgres")
    wanted = _data_major(data)
    if wanted is not None:
        for bin_dir in dirs:
            if _major(bin_dir) == wanted:
                return bin_dir
        raise InfraError(
            f"the cluster in {data} was created by PostgreSQL {wanted}, whose server binaries "
            f"are not installed (install postgresql-{wanted}, or delete {data} to start afresh)"
        )
    for bin_dir in dirs:
        if _major(bin_dir) == PREFERRED_MAJOR:
            return bin_dir
    return max(dirs, key=_major)


# Directories and ownership ----------------------------------------------------------------


def _os_user() -> pwd.struct_passwd | None:
    """The account to run the server as: ``postgres`` when we are root, else ourselves."""
    if not is_root():
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise InfraError(
            "running as root but there is no `postgres` system user to run PostgreSQL as "
            "(install Debian's postgresql package, or run as a normal user)"
        ) from None


def _can_traverse(user: str, path: Path) -> bool:
    result = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-x", str(path)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _fallback_root(settings: Settings) -> Path:
    digest = hashlib.sha256(str(settings.state_dir).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"perisai-postgres-{digest}"


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def prepare_layout(settings: Settings, user: pwd.struct_passwd | None) -> Layout:
    """Create the cluster's directories, owned by the account that runs the server."""
    link = settings.postgres_dir
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        root = link.resolve()
    elif link.exists() or user is None or _can_traverse(user.pw_name, settings.state_dir):
        root = link
    else:
        root = _fallback_root(settings)
        link.symlink_to(root, target_is_directory=True)
        progress(
            f"postgres: the `{user.pw_name}` user cannot reach {settings.state_dir}, so the "
            f"cluster lives in {root} ({link} links to it)"
        )
    lay = Layout(root)
    for directory in (lay.root, lay.data, lay.logs):
        directory.mkdir(parents=True, exist_ok=True)
    lay.data.chmod(0o700)
    if user is not None:
        os.chown(lay.root, user.pw_uid, user.pw_gid)
        os.chown(lay.logs, user.pw_uid, user.pw_gid)
        if lay.log_file.exists():
            os.chown(lay.log_file, user.pw_uid, user.pw_gid)
        if lay.data.stat().st_uid != user.pw_uid:
            _chown_tree(lay.data, user.pw_uid, user.pw_gid)
    return lay


# Server lifecycle -------------------------------------------------------------------------


def running(lay: Layout) -> tuple[int, int] | None:
    """(pid, port) of the cluster's postmaster if it is running, from postmaster.pid."""
    try:
        lines = (lay.data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    argv = cmdline(pid)
    if not pid_alive(pid) or (argv and "postgres" not in argv[0]):
        return None
    return pid, port


def _initdb(bin_dir: Path, lay: Layout, user: str | None) -> None:
    progress(f"postgres: creating a new cluster in {lay.data} (first run only)...")
    base = [str(bin_dir / "initdb"), "-D", str(lay.data), "-A", "trust", "--auth-local=trust"]
    base += ["-U", SUPERUSER, "-E", "UTF8", "--no-instructions"]
    try:
        run(as_user(user, [*base, "--locale=C.UTF-8"]), what="initdb", timeout=180, cwd=lay.root)
    except InfraError:
        # Some systems lack the C.UTF-8 locale; plain C sorts the same for our purposes.
        # initdb cleans the data directory it failed in, so it can simply be re-run.
        run(as_user(user, [*base, "--locale=C"]), what="initdb", timeout=180, cwd=lay.root)


def _server_options(port: int) -> str:
    # unix_socket_directories='' : TCP on 127.0.0.1 only, so clusters of several checkouts
    # never collide on /var/run/postgresql and no socket path length limit applies.
    return (
        f"-c listen_addresses={HOST} -p {port} -c unix_socket_directories='' "
        "-c fsync=on -c max_connections=200 -c shared_buffers=256MB"
    )


def _pg_ctl_start(bin_dir: Path, lay: Layout, user: str | None, port: int) -> None:
    cmd = [
        str(bin_dir / "pg_ctl"),
        "-D",
        str(lay.data),
        "-l",
        str(lay.log_file),
        "-o",
        _server_options(port),
        "-w",
        "-t",
        str(START_TIMEOUT),
        "start",
    ]
    try:
        run(as_user(user, cmd), what="pg_ctl start", timeout=START_TIMEOUT + 30, cwd=lay.root)
    except InfraError as exc:
        details = "\n".join(filter(None, [exc.details, log_tails(lay.log_file)]))
        raise InfraError(
            f"postgres failed to start on {HOST}:{port}; see {lay.log_file}", details=details
        ) from exc


async def _connect(port: int, database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(host=HOST, port=port, user=SUPERUSER, database=database, timeout=5)


def _wait_ready(bin_dir: Path, lay: Layout, port: int) -> None:
    """pg_isready and then a real login: the server accepts queries, not just connections."""
    deadline = time.monotonic() + START_TIMEOUT
    isready = [str(bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(port), "-U", SUPERUSER]
    while True:
        ok = subprocess.run(isready, check=False, timeout=10).returncode == 0
        if ok:
            try:
                run_sync(_check_login(port))
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
        if time.monotonic() >= deadline:
            raise InfraError(
                f"postgres did not accept connections on {HOST}:{port} within "
                f"{START_TIMEOUT} s; see {lay.log_file}",
                details=log_tails(lay.log_file),
            )
        time.sleep(0.3)


async def _check_login(port: int) -> None:
    conn = await _connect(port)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def _ident(name: str) -> str:
    """Quote an SQL identifier (database and role names cannot be query parameters)."""
    if not name or len(name.encode()) > 63 or "\0" in name:
        raise InfraError(f"invalid PostgreSQL identifier {name!r} (1-63 bytes, no NUL)")
    return '"' + name.replace('"', '""') + '"'


async def ensure_app_role(port: int) -> None:
    """Role ``perisai`` (password ``perisai``, LOGIN CREATEDB) owning database ``perisai``,
    and the services' runtime roles."""
    conn = await _connect(port)
    try:
        role_sql = f"{_ident(ROLE)} LOGIN CREATEDB PASSWORD '{PASSWORD}'"
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ROLE):
            await conn.execute(f"ALTER ROLE {role_sql}")
        else:
            await conn.execute(f"CREATE ROLE {role_sql}")
        for service_role in SERVICE_ROLES:
            login = (
                f"{_ident(service_role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"PASSWORD '{service_role}'"
            )
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", service_role):
                await conn.execute(f"ALTER ROLE {login}")
            else:
                await conn.execute(f"CREATE ROLE {login}")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"CREATE DATABASE {_ident(DATABASE)} OWNER {_ident(ROLE)}")
    finally:
        await conn.close()


def up(settings: Settings) -> bool:
    """Start the cluster if needed (creating it on first use); True if this call started it."""
    user = _os_user()
    username = user.pw_name if user else None
    port = settings.postgres_port
    lay = prepare_layout(settings, user)
    bin_dir = find_bin_dir(settings, lay.data)
    current = running(lay)
    if current is not None:
        pid, running_port = current
        if running_port != port:
            raise InfraError(
                f"postgres (pid {pid}) is already running on port {running_port}, but "
                f"PERISAI_POSTGRES_PORT is {port}: run `python -m infra down postgres` first"
            )
        started = False
    else:
        if _data_major(lay.data) is None:
            if any(lay.data.iterdir()):
                raise InfraError(
                    f"{lay.data} is not empty but holds no PostgreSQL cluster; move it away"
                )
            _initdb(bin_dir, lay, username)
        require_free_port(HOST, port, "postgres", "PERISAI_POSTGRES_PORT")
        _pg_ctl_start(bin_dir, lay, username, port)
        started = True
    _wait_ready(bin_dir, lay, port)
    run_sync(ensure_app_role(port))
    return started


def stop(settings: Settings) -> bool:
    """``pg_ctl stop -m fast`` (then immediate, then SIGKILL); True if it was running."""
    lay = layout(settings)
    current = running(lay)
    if current is None:
        return False
    pid = current[0]
    user = _os_user()
    username = user.pw_name if user else None
    bin_dir = find_bin_dir(settings, lay.data)
    for mode in ("fast", "immediate"):
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(lay.data), "-m", mode, "-w"]
        cmd += ["-t", str(STOP_TIMEOUT), "stop"]
        try:
            run(as_user(username, cmd), what="pg_ctl stop", timeout=STOP_TIMEOUT + 15, cwd=lay.root)
            return True
        except InfraError:
            continue
    terminate(pid, timeout=5)
    return True


def is_running(settings: Settings) -> bool:
    current = running(layout(settings))
    return current is not None and port_open(HOST, current[1])


# Databases for tests ----------------------------------------------------------------------


async def create_database(port: int, name: str, owner: str, replace: bool) -> None:
    conn = await _connect(port)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and not replace:
            raise InfraError(f"database {name!r} already exists")
        if exists:
            await conn.execute(f"DROP DATABASE {_ident(name)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {_ident(name)} OWNER {_ident(owner)}")
    finally:
        await conn.close()


async def drop_database(port: int, name: str) -> None:
    conn = await _connect(port)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()
