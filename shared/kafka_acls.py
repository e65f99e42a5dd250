"""The Kafka topics and ACLs of a secured cluster, derived from the services' brokers
(the same source as the AsyncAPI documents): each service's user may read the topics
it consumes, with its own consumer groups, and write the topics it produces. Nothing
else: no topic creation, no other service's topics or groups. (Idempotent producers
need no cluster right from Kafka 2.8 on, KIP-679: Write on a topic is enough.)

    python -m shared.kafka_acls [--topic-prefix P] [--principal SERVICE=User:NAME ...]
        [--replication-factor N] [--bootstrap-server HOST:PORT] [--command-config FILE]

prints the ``kafka-topics.sh`` and ``kafka-acls.sh`` commands (Kafka's own tools) an
operator runs once, as a cluster administrator, before the services start.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.asyncapi import SERVICES, build_broker
from shared.kafka import topics_of
from shared.topics import DEFAULT_PARTITIONS


def default_principal(service: str) -> str:
    return f"User:perisai-{service}"


@dataclass(frozen=True)
class ServiceAcls:
    """What one service's Kafka principal may do."""

    service: str
    principal: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group_prefix: str
    """Every consumer group of the service starts with this (``<prefix><service>.``)."""

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({*self.reads, *self.writes}))

    def acl_arguments(self) -> list[list[str]]:
        """``kafka-acls.sh`` arguments after the connection options, one list a call."""
        allow = ["--add", "--allow-principal", self.principal]
        calls = []
        if self.reads:
            calls.append([*allow, "--operation", "Read", *_each("--topic", self.reads)])
            calls.append(
                [*allow, "--operation", "Read", "--group", self.group_prefix,
                 "--resource-pattern-type", "prefixed"]
            )  # fmt: skip
        if self.writes:
            calls.append([*allow, "--operation", "Write", *_each("--topic", self.writes)])
        return calls


def _each(option: str, values: Sequence[str]) -> list[str]:
    return [part for value in values for part in (option, value)]


def service_acls(
    topic_prefix: str = "", principals: Mapping[str, str] | None = None
) -> list[ServiceAcls]:
    """The ACLs of every service, its topics named with ``topic_prefix``."""
    result = []
    for service in SERVICES:
        _, broker = build_broker(service)
        topics = topics_of(broker)
        group_prefix = f"{service.name}."
        if strays := [group for group in topics.groups if not group.startswith(group_prefix)]:
            raise ValueError(f"consumer groups of {service.name} outside {group_prefix}*: {strays}")
        result.append(
            ServiceAcls(
                service=service.name,
                principal=(principals or {}).get(service.name, default_principal(service.name)),
                reads=tuple(topic_prefix + t for t in topics.reads),
                writes=tuple(topic_prefix + t for t in topics.writes),
                group_prefix=topic_prefix + group_prefix,
            )
        )
    return result


def all_topics(acls: Sequence[ServiceAcls]) -> tuple[str, ...]:
    return tuple(sorted({topic for entry in acls for topic in entry.topics}))


def _principal(text: str) -> tuple[str, str]:
    service, _, principal = text.partition("=")
    names = [s.name for s in SERVICES]
    if service not in names or not principal.startswith("User:"):
        raise argparse.ArgumentTypeError(
            f"expected SERVICE=User:NAME with SERVICE one of {', '.join(names)}, got {text!r}"
        )
    return service, principal


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.kafka_acls",
        description="Print the kafka-topics.sh and kafka-acls.sh commands that prepare a "
        "secured Kafka cluster for the three services.",
    )
    parser.add_argument("--topic-prefix", default="", help="PERISAI_TOPIC_PREFIX of the services")
    parser.add_argument(
        "--principal",
        action="append",
        type=_principal,
        default=[],
        metavar="SERVICE=User:NAME",
        help="a service's Kafka principal (default User:perisai-SERVICE)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        help="of the topics (default: the cluster's default.replication.factor)",
    )
    parser.add_argument("--bootstrap-server", default="BROKER:9093")
    parser.add_argument(
        "--command-config",
        default="admin.properties",
        help="the Kafka tools' client properties of a cluster administrator",
    )
    args = parser.parse_args(argv)
    acls = service_acls(args.topic_prefix, dict(args.principal))
    connection = [
        "--bootstrap-server", args.bootstrap_server, "--command-config", args.command_config,
    ]  # fmt: skip
    lines = ["# Topics (partitions: consumers of one group that can work in parallel)"]
    replication = (
        ["--replication-factor", str(args.replication_factor)] if args.replication_factor else []
    )
    lines += [
        shlex.join(["kafka-topics.sh", *connection, "--create", "--if-not-exists",
                    "--topic", topic, "--partitions", str(DEFAULT_PARTITIONS), *replication])
        for topic in all_topics(acls)
    ]  # fmt: skip
    for entry in acls:
        lines.append(f"# {entry.service}: {entry.principal}")
        lines += [
            shlex.join(["kafka-acls.sh", *connection, *arguments])
            for arguments in entry.acl_arguments()
        ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
