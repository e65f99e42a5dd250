"""``python -m infra up|down|status [kafka|postgres]``: the local stack from the shell.
``python -m infra kafka-tool TOOL [ARGS...]`` runs one of Kafka's own command-line tools
(console-producer, console-consumer, consumer-groups, get-offsets) against it."""

from __future__ import annotations

import argparse
import os
import sys

from infra import kafka_server, stack
from infra.errors import InfraError
from infra.paths import HOST, Settings

EXIT_FAILURE = 1
EXIT_NOT_RUNNING = 3


def _addresses(settings: Settings) -> dict[str, str]:
    return {"kafka": settings.kafka_bootstrap, "postgres": f"{HOST}:{settings.postgres_port}"}


def _logs() -> dict[str, str]:
    return {"kafka": stack.kafka_log_file(), "postgres": stack.postgres_log_file()}


def _selection(server: str | None) -> dict[str, bool]:
    return {name: server in (None, name) for name in stack.SERVERS}


def _up(server: str | None) -> int:
    started = stack.up(**_selection(server))
    address, logs = _addresses(Settings.from_env()), _logs()
    for name, new in started.items():
        note = "" if new else "   (was already running)"
        print(f"{name:<9} ready on {address[name]:<17} logs: {logs[name]}{note}")
    return 0


def _down(server: str | None) -> int:
    for name, was_running in stack.down(**_selection(server)).items():
        print(f"{name:<9} {'stopped' if was_running else 'was not running'}")
    return 0


def _status() -> int:
    running = stack.status()
    address, logs = _addresses(Settings.from_env()), _logs()
    for name, up in running.items():
        if up:
            print(f"{name:<9} running on {address[name]:<17} logs: {logs[name]}")
        else:
            print(f"{name:<9} stopped")
    return 0 if all(running.values()) else EXIT_NOT_RUNNING


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra",
        description="Run Perisai's local Kafka broker and PostgreSQL cluster (no Docker). "
        "Ports: PERISAI_KAFKA_PORT, PERISAI_KAFKA_CONTROLLER_PORT, PERISAI_POSTGRES_PORT; "
        "state directory: PERISAI_INFRA_DIR (default <repo>/.infra).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("up", "start the servers (idempotent) and wait until they are ready"),
        ("down", "stop the servers (idempotent)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "server", nargs="?", choices=stack.SERVERS, help="act on this server only"
        )
    commands.add_parser("status", help="show which servers run (exit code 3 if any is stopped)")
    tool = commands.add_parser(
        "kafka-tool",
        help="run one of Kafka's tools against the local broker, e.g. "
        "kafka-tool consumer-groups --describe --all-groups",
    )
    tool.add_argument("tool", choices=sorted(kafka_server.TOOLS))
    tool.add_argument("args", nargs=argparse.REMAINDER, help="the tool's own arguments")
    return parser


def _kafka_tool(tool: str, args: list[str]) -> int:
    command = stack.kafka_tool_command(tool, *args)
    os.execvp(command[0], command)  # the tool takes over the terminal, stdin included


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            return _up(args.server)
        if args.command == "down":
            return _down(args.server)
        if args.command == "kafka-tool":
            return _kafka_tool(args.tool, args.args)
        return _status()
    except InfraError as exc:
        if exc.details:
            print(exc.details, file=sys.stderr)
        print(f"infra: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("infra: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
