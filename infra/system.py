"""Operating-system packages and users: installing what is missing, running as ``postgres``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from infra.console import progress
from infra.errors import InfraError
from infra.process import run


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(packages: Sequence[str], why: str, log_file: Path) -> None:
    """Install Debian packages (root only); otherwise explain what to install and stop."""
    names = " ".join(packages)
    if not is_root():
        raise InfraError(f"{why}: install it first, e.g. `sudo apt-get install -y {names}`")
    if shutil.which("apt-get") is None:
        raise InfraError(f"{why}: install the package(s) {names} with your package manager")
    progress(f"{why}; installing {names} with apt-get (first run only, log: {log_file})...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], what="apt-get update", timeout=600, env=env, log_file=log_file)
    run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        what=f"apt-get install {names}",
        timeout=1200,
        env=env,
        log_file=log_file,
    )


def require_command(name: str, apt_package: str, log_file: Path, server: str) -> str:
    """Path of executable ``name``, installing ``apt_package`` when root and it is missing."""
    found = shutil.which(name)
    if found is None:
        apt_install([apt_package], f"{server}: `{name}` is not installed", log_file)
        found = shutil.which(name)
    if found is None:
        raise InfraError(f"`{name}` is still not on PATH after installing {apt_package}")
    return found


def as_user(user: str | None, cmd: Sequence[str]) -> list[str]:
    """``cmd`` wrapped to run as ``user`` (via runuser) when given, else unchanged."""
    if user is None:
        return list(cmd)
    return ["runuser", "-u", user, "--", *cmd]
