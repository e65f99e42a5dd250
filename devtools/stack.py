"""The whole product as separate local processes: the three services and the two
development stand-ins (SMS gateway, SMTP server). Used by the run command and by the
end-to-end tests, so both exercise exactly the same topology."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import infra
from devtools.serving import free_port

SERVICES = ("registration", "coverage", "notifications")
ALL_SCOPES = "enrol,read,admin,finance,ops"
JOB_TIMEOUT_S = 120


class KeyAuth(httpx.Auth):
    """Sends each service the stack's API key for it, chosen by the request's port."""

    def __init__(self, keys_by_port: dict[int, str]) -> None:
        self.keys_by_port = keys_by_port

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        key = self.keys_by_port.get(request.url.port or 0)
        if key is not None and "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {key}"
        yield request


class StackError(Exception):
    pass


@dataclass(frozen=True)
class StackConfig:
    database_url: str
    kafka_bootstrap: str
    log_dir: Path
    topic_prefix: str = ""
    host: str = "127.0.0.1"
    registration_port: int = 18001
    coverage_port: int = 18002
    notifications_port: int = 18003
    sms_port: int = 18025
    smtp_port: int = 18026
    smtp_http_port: int = 18027
    extra_env: dict[str, str] = field(default_factory=dict)
    service_extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Variables of one service only (its own Kafka user, say), by service name."""

    @classmethod
    def on_free_ports(
        cls,
        *,
        database_url: str,
        kafka_bootstrap: str,
        log_dir: Path,
        topic_prefix: str = "",
        extra_env: dict[str, str] | None = None,
        service_extra_env: dict[str, dict[str, str]] | None = None,
    ) -> StackConfig:
        """A configuration whose six ports were free a moment ago (for tests). Coverage's
        schedule is off unless ``extra_env`` turns it on: tests count what the consumers
        post, and a scheduled billing run at start-up would race with the first
        enrolments (the schedule is tested on its own)."""
        return cls(
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            log_dir=log_dir,
            topic_prefix=topic_prefix,
            registration_port=free_port(),
            coverage_port=free_port(),
            notifications_port=free_port(),
            sms_port=free_port(),
            smtp_port=free_port(),
            smtp_http_port=free_port(),
            extra_env={
                "PERISAI_SCHEDULE_ENABLED": "false",
                # Tests drive the APIs harder than any client should; the limit has tests
                # of its own.
                "PERISAI_RATE_LIMIT_PER_S": "10000",
                "PERISAI_RATE_LIMIT_BURST": "10000",
                **(extra_env or {}),
            },
            service_extra_env=service_extra_env or {},
        )

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def registration_url(self) -> str:
        return self.url(self.registration_port)

    @property
    def coverage_url(self) -> str:
        return self.url(self.coverage_port)

    @property
    def notifications_url(self) -> str:
        return self.url(self.notifications_port)

    @property
    def sms_url(self) -> str:
        return self.url(self.sms_port)

    @property
    def smtp_http_url(self) -> str:
        return self.url(self.smtp_http_port)

    def job_env(self, service: str) -> dict[str, str]:
        """The environment of a service's jobs (``migrate``, ``keys``): they act as the
        schema's owner, and grant the runtime role its rights."""
        return {
            **self.service_env(service, 0),
            "PERISAI_MIGRATION_DATABASE_URL": self.database_url,
            "PERISAI_MIGRATE_ON_START": "true",
        }

    def service_env(self, service: str, port: int) -> dict[str, str]:
        """A running service's environment: its own runtime role, which can reach its
        own schema only and may not migrate it (a job did, see job_env), and no
        owner's URL at all."""
        return {
            "PERISAI_DATABASE_URL": infra.runtime_dsn(self.database_url, service),
            "PERISAI_MIGRATE_ON_START": "false",
            "PERISAI_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "PERISAI_TOPIC_PREFIX": self.topic_prefix,
            "PERISAI_HTTP_HOST": self.host,
            "PERISAI_HTTP_PORT": str(port),
            "PERISAI_SMS_GATEWAY_URL": self.sms_url,
            "PERISAI_SMTP_HOST": self.host,
            "PERISAI_SMTP_PORT": str(self.smtp_port),
            # Each stack keeps its own uploads: two stacks importing the same file (the
            # same digest, so the same name) must not share, nor delete, each other's.
            "PERISAI_IMPORT_DIR": str(
                Path(tempfile.gettempdir()) / "perisai-imports" / (self.topic_prefix or "main")
            ),
            **self.extra_env,
            **self.service_extra_env.get(service, {}),
        }


@dataclass
class ManagedProcess:
    """One child process with its log file and a readiness URL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches the runner only
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise StackError(
                    f"{self.name} exited (code {code}) before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if (await client.get(self.ready_url, timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise StackError(
            f"{self.name} not ready after {timeout_s:.0f} s; log {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no cleanup, no offset commit."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(5)


class LocalStack:
    """The five processes, started in dependency order and stopped in reverse."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.keys: dict[str, str] = {}
        self.feeder_key = ""
        self.auth = KeyAuth({})
        python = sys.executable
        c = config
        logs = c.log_dir
        self.processes: dict[str, ManagedProcess] = {
            "sms-gateway": ManagedProcess(
                "sms-gateway",
                [python, "-m", "devtools.sms_gateway", "--host", c.host, "--port", str(c.sms_port),
                 "--log", str(logs / "sms-gateway.jsonl")],
                {},
                logs / "sms-gateway.log",
                f"{c.sms_url}/health",
            ),
            "smtp-server": ManagedProcess(
                "smtp-server",
                [python, "-m", "devtools.smtp_sink", "--host", c.host, "--port", str(c.smtp_port),
                 "--http-port", str(c.smtp_http_port), "--log", str(logs / "smtp.jsonl")],
                {},
                logs / "smtp-server.log",
                f"{c.smtp_http_url}/health",
            ),
        }  # fmt: skip
        for name, port in (
            ("registration", c.registration_port),
            ("coverage", c.coverage_port),
            ("notifications", c.notifications_port),
        ):
            self.processes[name] = ManagedProcess(
                name,
                [python, "-m", f"services.{name}"],
                c.service_env(name, port),
                logs / f"{name}.log",
                f"{c.url(port)}/health/ready",
            )

    def __getitem__(self, name: str) -> ManagedProcess:
        return self.processes[name]

    async def _job(self, service: str, *args: str) -> bytes:
        """Run one of ``service``'s jobs (``python -m services.<service> ...``) as an
        operator would; its standard output."""
        command = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{service}", *args,
            env={**os.environ, **self.config.job_env(service)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(command.communicate(), JOB_TIMEOUT_S)
        except TimeoutError:
            command.kill()
            raise StackError(
                f"{service} {' '.join(args[:2])} took over {JOB_TIMEOUT_S} s"
            ) from None
        if command.returncode != 0:
            raise StackError(f"{service} {' '.join(args[:2])} failed: {err.decode()[-500:]}")
        return out

    async def migrate(self) -> None:
        """Each service's migration job, as the schema's owner, before the services
        start (they only check that they are migrated)."""
        await asyncio.gather(*(self._job(service, "migrate") for service in SERVICES))

    async def make_key(self, service: str, name: str, scopes: str) -> str:
        """A new API key of ``service``, made with its own command, as an operator would."""
        out = await self._job(service, "keys", "create", "--name", name, "--scope", scopes)
        key: str = json.loads(out)["key"]
        return key

    async def _make_keys(self) -> None:
        """One key with every scope per service (the stack's operator), and an
        enrolment-only key for the feeder, as an upstream system would hold."""
        made = await asyncio.gather(
            *(self.make_key(service, "local-stack", ALL_SCOPES) for service in SERVICES),
            self.make_key("registration", "local-feeder", "enrol"),
        )
        self.keys = dict(zip(SERVICES, made, strict=False))
        self.feeder_key = made[-1]
        c = self.config
        self.auth = KeyAuth(
            {
                c.registration_port: self.keys["registration"],
                c.coverage_port: self.keys["coverage"],
                c.notifications_port: self.keys["notifications"],
            }
        )

    def headers(self, service: str) -> dict[str, str]:
        """The Authorization header of the stack's key for ``service``."""
        return {"Authorization": f"Bearer {self.keys[service]}"}

    async def start(self, timeout_s: float = 60.0) -> None:
        await self.migrate()
        if not self.keys:
            await self._make_keys()
        for process in self.processes.values():
            process.start()
        async with httpx.AsyncClient() as client:
            await asyncio.gather(
                *(p.wait_ready(client, timeout_s) for p in self.processes.values())
            )

    async def restart(self, name: str, timeout_s: float = 60.0) -> None:
        process = self.processes[name]
        process.stop()
        process.start()
        async with httpx.AsyncClient() as client:
            await process.wait_ready(client, timeout_s)

    def stop(self) -> dict[str, int | None]:
        return {name: p.stop() for name, p in reversed(self.processes.items())}

    async def summary(self, client: httpx.AsyncClient) -> dict[str, Any]:
        """Each service's and stand-in's own figures, side by side."""
        c = self.config
        urls = {
            "registration": f"{c.registration_url}/v1/summary",
            "coverage": f"{c.coverage_url}/v1/summary",
            "coverage_ledger": f"{c.coverage_url}/v1/ledger/check",
            "notifications": f"{c.notifications_url}/v1/summary",
            "sms_gateway": f"{c.sms_url}/v1/stats",
            "smtp_server": f"{c.smtp_http_url}/v1/stats",
        }
        responses = await asyncio.gather(
            *(client.get(u, timeout=10, auth=self.auth) for u in urls.values())
        )
        for response in responses:
            response.raise_for_status()
        return {name: r.json() for name, r in zip(urls, responses, strict=True)}
