"""A single-node Apache Kafka broker (KRaft, combined broker+controller) without Docker.

The jars come from Maven Central via ``infra/kafka/pom.xml`` and are cached in
``.infra/kafka/libs``; storage is formatted once in ``.infra/kafka/data`` and reused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from infra.aio import run_sync
from infra.console import progress
from infra.errors import InfraError
from infra.paths import HOST, KAFKA_RESOURCES, REPO_ROOT, Settings
from infra.process import (
    cmdline,
    log_tails,
    pid_alive,
    port_open,
    read_pid,
    require_free_port,
    run,
    spawn_detached,
    terminate,
    write_pid,
)
from infra.system import require_command

POM = KAFKA_RESOURCES / "pom.xml"
LOG4J2_CONFIG = KAFKA_RESOURCES / "log4j2.properties"
MARKER = ".perisai-complete"
"""Written into the libs folder after a complete download; holds the pom's hash."""

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
JVM_OPTIONS = ["-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


def _pom_hash() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _libs_ready(libs: Path) -> bool:
    marker = libs / MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_hash()


def ensure_jars(settings: Settings) -> None:
    """Download Kafka and its runtime dependencies unless the pom's jars are already cached."""
    libs = settings.kafka_libs
    if _libs_ready(libs):
        return
    log_file = settings.kafka_logs / "maven.log"
    mvn = require_command("mvn", "maven", settings.state_dir / "apt.log", "kafka")
    progress(f"kafka: fetching Kafka jars from Maven Central (first run only, log: {log_file})...")
    started = time.monotonic()
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        what="fetching the Kafka jars with Maven",
        timeout=900,
        cwd=REPO_ROOT,
        log_file=log_file,
    )
    jars = sorted(staging.glob("*.jar"))
    if not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        raise InfraError(f"Maven finished but no Kafka jar arrived in {staging}; see {log_file}")
    (staging / MARKER).write_text(_pom_hash() + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    progress(f"kafka: fetched {len(jars)} jars in {time.monotonic() - started:.0f} s")


def _java(settings: Settings) -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return require_command("java", "default-jre-headless", settings.state_dir / "apt.log", "kafka")


def _classpath(settings: Settings) -> str:
    return f"{settings.kafka_libs}/*"  # expanded by the JVM, not the shell


TOOLS = {
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
}
"""Kafka's own command-line tools (the kafka-tools jar), by the name of their scripts."""


def tool_command(settings: Settings, tool: str, args: list[str]) -> list[str]:
    """The command running one of Kafka's tools on this checkout's jars, with the local
    broker as ``--bootstrap-server`` unless ``args`` names one."""
    if tool not in TOOLS:
        raise InfraError(f"unknown Kafka tool {tool!r}; one of {', '.join(TOOLS)}")
    ensure_jars(settings)
    bootstrap = (
        []
        if "--bootstrap-server" in args
        else [
            "--bootstrap-server",
            settings.kafka_bootstrap,
        ]
    )
    return [
        _java(settings),
        "-cp",
        _classpath(settings),
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={settings.kafka_logs}",
        TOOLS[tool],
        *bootstrap,
        *args,
    ]


def write_config(settings: Settings) -> None:
    """(Re)write server.properties so it always matches the current ports and paths."""
    port, controller = settings.kafka_port, settings.kafka_controller_port
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(settings.kafka_data.absolute()),
        "num.partitions": "4",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
    }
    lines = ["# Generated by `python -m infra up` on every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in properties.items()]
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    settings.kafka_config.write_text("\n".join(lines) + "\n")


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding (22 chars).

    Like Kafka's own ``Uuid.randomUuid`` it never starts with '-', which the
    command-line tools would read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def ensure_formatted(settings: Settings) -> None:
    """Format the KRaft storage once; later runs reuse the data (topics and offsets survive).

    With a static ``controller.quorum.voters`` Kafka 4.1 wants plain ``format -t ID -c FILE``:
    ``--standalone`` / ``--initial-controllers`` are only for dynamic quorums and are
    rejected when ``controller.quorum.voters`` is set.
    """
    if (settings.kafka_data / "meta.properties").is_file():
        return
    cluster_id_file = settings.kafka_dir / "cluster.id"
    if cluster_id_file.is_file() and cluster_id_file.read_text().strip():
        cluster_id = cluster_id_file.read_text().strip()
    else:
        cluster_id = _new_cluster_id()
        cluster_id_file.write_text(cluster_id + "\n")
    progress(f"kafka: formatting storage in {settings.kafka_data} (cluster id {cluster_id})...")
    run(
        [
            _java(settings),
            "-cp",
            _classpath(settings),
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={settings.kafka_logs}",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(settings.kafka_config),
        ],
        what="formatting the Kafka storage (kafka.tools.StorageTool format)",
        timeout=120,
        cwd=settings.kafka_dir,
    )


def running_pid(settings: Settings) -> int | None:
    """Pid of this checkout's broker if it is running; removes a stale pid file."""
    pid_file = settings.kafka_pid_file
    pid = read_pid(pid_file)
    if pid is None:
        return None
    argv = cmdline(pid)
    ours = "kafka.Kafka" in argv and str(settings.kafka_config) in argv
    if pid_alive(pid) and (ours or not argv):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def start(settings: Settings) -> tuple[int, bool]:
    """Make sure a broker process exists; return (pid, whether this call started it).

    Does not wait for readiness (see :func:`wait_ready`), so the caller can prepare
    other servers while the JVM boots.
    """
    pid = running_pid(settings)
    if pid is not None:
        return pid, False
    ensure_jars(settings)
    for port, env_var in (
        (settings.kafka_port, "PERISAI_KAFKA_PORT"),
        (settings.kafka_controller_port, "PERISAI_KAFKA_CONTROLLER_PORT"),
    ):
        require_free_port(HOST, port, "kafka", env_var)
    settings.kafka_logs.mkdir(parents=True, exist_ok=True)
    write_config(settings)
    ensure_formatted(settings)
    cmd = [
        _java(settings),
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={settings.kafka_logs}",
        "-cp",
        _classpath(settings),
        "kafka.Kafka",
        str(settings.kafka_config),
    ]
    pid = spawn_detached(cmd, settings.kafka_stdout_file, cwd=settings.kafka_dir)
    write_pid(settings.kafka_pid_file, pid)
    return pid, True


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs every refused connection; while polling a booting broker that is noise."""
    logger = logging.getLogger("aiokafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


async def probe(bootstrap: str, **client_options: Any) -> bool:
    """True if the broker answers metadata requests and reports itself in the cluster
    (``client_options``: aiokafka's security settings, for a secured listener)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="perisai-infra-probe",
        request_timeout_ms=5000,
        **client_options,
    )
    try:
        async with asyncio.timeout(8):
            await admin.start()
            await admin.list_topics()
            cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def is_ready(settings: Settings) -> bool:
    if not port_open(HOST, settings.kafka_port):
        return False
    with quiet_aiokafka():
        return run_sync(probe(settings.kafka_bootstrap))


def wait_ready(settings: Settings, pid: int, timeout: float = READY_TIMEOUT) -> None:
    """Block until the broker serves clients; fail early if the process dies."""
    deadline = time.monotonic() + timeout
    logs = (settings.kafka_stdout_file, settings.kafka_log_file)
    while not is_ready(settings):
        if not pid_alive(pid):
            settings.kafka_pid_file.unlink(missing_ok=True)
            raise InfraError(
                f"kafka exited during startup; see {settings.kafka_log_file}",
                details=log_tails(*logs),
            )
        if time.monotonic() >= deadline:
            raise InfraError(
                f"kafka (pid {pid}) did not become ready on {settings.kafka_bootstrap} within "
                f"{timeout:.0f} s; see {settings.kafka_log_file} "
                "(stop it with `python -m infra down kafka`)",
                details=log_tails(*logs),
            )
        time.sleep(0.5)


def up(settings: Settings) -> bool:
    """Start the broker if needed and wait until it is ready; True if this call started it."""
    pid, started = start(settings)
    wait_ready(settings, pid)
    return started


def stop(settings: Settings) -> bool:
    """Stop the broker (SIGTERM, SIGKILL after 30 s); True if one was running."""
    pid = running_pid(settings)
    if pid is None:
        return False
    terminate(pid, STOP_TIMEOUT)
    settings.kafka_pid_file.unlink(missing_ok=True)
    return True


def is_running(settings: Settings) -> bool:
    return running_pid(settings) is not None and port_open(HOST, settings.kafka_port)
