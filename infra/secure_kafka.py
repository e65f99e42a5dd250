"""A second, throw-away Kafka broker that only speaks SASL_SSL (SCRAM-SHA-512 over TLS)
and authorises every request with KRaft's ``StandardAuthorizer``: the lane where tests
prove that the services' clients connect securely and that each service's user may
touch only its own topics.

Its certificates come from :mod:`infra.certs`; its SCRAM users are written into the
storage when it is formatted (``--add-scram``), as Kafka requires for the first users
of a KRaft cluster. ``admin`` is the only super user on the SASL_SSL listener; the
controller listener is plaintext on loopback, for the broker's own use (its principal,
ANONYMOUS, is a super user so the broker may talk to its controller). Everything lives
in one folder, removed by the caller.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra import certs
from infra.aio import run_sync
from infra.errors import InfraError
from infra.kafka_server import (
    JVM_OPTIONS,
    LOG4J2_CONFIG,
    READY_TIMEOUT,
    _classpath,
    _java,
    _new_cluster_id,
    ensure_jars,
    probe,
    quiet_aiokafka,
)
from infra.paths import HOST, Settings
from infra.process import log_tails, pid_alive, run, spawn_detached, terminate

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
ACL_COMMAND = "org.apache.kafka.tools.AclCommand"


def _jaas(user: str, password: str) -> str:
    return f'{SCRAM_LOGIN} required username="{user}" password="{password}";'


@dataclass(frozen=True)
class SecureBroker:
    """A running SASL_SSL broker: where it listens, who may log in, what to trust."""

    bootstrap: str
    folder: Path
    ca_file: Path
    passwords: Mapping[str, str] = field(repr=False)
    pid: int
    client_cert: certs.Certificate
    """Signed by the same authority, for clients that present a certificate."""

    @property
    def admin_properties(self) -> Path:
        """Client properties of the super user, for Kafka's own tools."""
        return self.folder / "admin.properties"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client_options(self, user: str = ADMIN) -> dict[str, object]:
        """aiokafka keyword arguments logging in as ``user``."""
        return {
            "security_protocol": "SASL_SSL",
            "ssl_context": self.ssl_context(),
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": self.passwords[user],
        }

    def acls(self, arguments: Sequence[Sequence[str]], settings: Settings | None = None) -> None:
        """Run Kafka's ACL tool (``kafka-acls.sh``) once for each argument list, as admin."""
        settings = settings or Settings.from_env()
        for args in arguments:
            run(
                [_java(settings), "-cp", _classpath(settings),
                 f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
                 f"-Dkafka.logs.dir={self.folder / 'logs'}", ACL_COMMAND,
                 "--bootstrap-server", self.bootstrap,
                 "--command-config", str(self.admin_properties), *args],
                what="kafka-acls (org.apache.kafka.tools.AclCommand)",
                timeout=120,
                cwd=self.folder,
            )  # fmt: skip


def _server_properties(
    folder: Path,
    port: int,
    controller: int,
    keystore: Path,
    keystore_password: str,
    ca_file: Path,
    admin_password: str,
) -> str:
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller}",
        "listeners": f"SASL_SSL://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": f"SASL_SSL://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": _jaas(
            ADMIN, admin_password
        ),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(keystore),
        "ssl.keystore.password": keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file),
        "ssl.client.auth": "requested",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "auto.create.topics.enable": "false",
        "log.dirs": str(folder / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in properties.items())


def _keystore(cert: certs.Certificate, password: str) -> Path:
    keystore = cert.cert.with_suffix(".p12")
    run(
        [certs.openssl(cert.cert.parent), "pkcs12", "-export", "-in", str(cert.cert),
         "-inkey", str(cert.key), "-name", "broker", "-out", str(keystore),
         "-passout", f"pass:{password}"],
        what="openssl: the broker's PKCS#12 keystore",
        timeout=60,
    )  # fmt: skip
    return keystore


@contextlib.contextmanager
def secure_broker(
    folder: Path, port: int, controller_port: int, users: Sequence[str]
) -> Iterator[SecureBroker]:
    """Start a SASL_SSL broker in ``folder`` on the two ports, with ``admin`` and
    ``users`` as SCRAM users (random passwords); stop it on exit."""
    settings = Settings.from_env()
    ensure_jars(settings)
    folder.mkdir(parents=True, exist_ok=True)
    authority = certs.authority(folder / "tls", "Perisai SASL_SSL lane CA")
    server = certs.issue(authority, folder / "tls", "broker")
    client = certs.issue(authority, folder / "tls", "client")
    keystore_password = secrets.token_urlsafe(16)
    passwords = {name: secrets.token_urlsafe(16) for name in (ADMIN, *users)}
    config = folder / "server.properties"
    config.write_text(
        _server_properties(
            folder, port, controller_port, _keystore(server, keystore_password),
            keystore_password, authority.cert, passwords[ADMIN],
        )
    )  # fmt: skip
    (folder / "admin.properties").write_text(
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={MECHANISM}\n"
        f"sasl.jaas.config={_jaas(ADMIN, passwords[ADMIN])}\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={authority.cert}\n"
    )
    java_logs = [
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={folder / 'logs'}",
    ]
    scram = [
        part
        for name, password in passwords.items()
        for part in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")
    ]
    run(
        [_java(settings), "-cp", _classpath(settings), *java_logs, "kafka.tools.StorageTool",
         "format", "-t", _new_cluster_id(), "-c", str(config), *scram],
        what="formatting the SASL_SSL broker's storage (kafka.tools.StorageTool format)",
        timeout=120,
        cwd=folder,
    )  # fmt: skip
    stdout = folder / "logs" / "stdout.log"
    pid = spawn_detached(
        [_java(settings), *JVM_OPTIONS, *java_logs, "-cp", _classpath(settings),
         "kafka.Kafka", str(config)],
        stdout,
        cwd=folder,
    )  # fmt: skip
    broker = SecureBroker(f"{HOST}:{port}", folder, authority.cert, passwords, pid, client)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        with quiet_aiokafka():
            while not run_sync(probe(broker.bootstrap, **broker.client_options())):
                if not pid_alive(pid) or time.monotonic() > deadline:
                    raise InfraError(
                        f"the SASL_SSL broker did not start on {broker.bootstrap}",
                        details=log_tails(stdout, folder / "logs" / "server.log"),
                    )
                time.sleep(0.5)
        yield broker
    finally:
        terminate(pid, 30)
