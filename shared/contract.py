"""The compatibility rule of the message contract, enforced.

Within one version of an event (one ``.vN`` topic) a producer may add optional fields
and nothing else: it never removes, renames or retypes a field, and never makes one
required. Otherwise a consumer that has not been upgraded yet (or one that has, reading
a record an older producer wrote) would lose data or dead-letter live traffic.

``docs/contract/<topic>.json`` holds, per event version, every field that version has
ever had, with its type (the JSON schema without descriptions and examples) and
whether it is required. ``python -m shared.contract`` brings those snapshots up to date
and refuses (exit 1, naming each problem) a change that breaks the rule; with
``--check`` it only reports (a unit test runs it, so a breaking change fails CI).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.events import EVENT_TYPES, Event

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTRACT_DIR = REPO_ROOT / "docs" / "contract"
PROSE = frozenset({"description", "examples", "title"})
"""Keys of a JSON schema that explain a field without changing what it accepts."""


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """The schema with every ``$ref`` replaced by its definition and prose removed."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(definitions[schema["$ref"].rsplit("/", 1)[1]], definitions)
        return {k: _inline(v, definitions) for k, v in schema.items() if k not in PROSE}
    if isinstance(schema, list):
        return [_inline(item, definitions) for item in schema]
    return schema


def snapshot(event_type: type[Event]) -> dict[str, Any]:
    """What one event version promises: each field's type and whether it is required."""
    schema = event_type.model_json_schema()
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", []))
    return {
        "event": event_type.__name__,
        "topic": event_type.TOPIC,
        "fields": {
            name: {"required": name in required, "schema": _inline(field, definitions)}
            for name, field in sorted(schema["properties"].items())
        },
    }


def breaking_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """How ``current`` breaks the promise ``recorded`` made; empty when it does not."""
    problems = []
    before, now = recorded["fields"], current["fields"]
    for name, field in before.items():
        if name not in now:
            problems.append(f"field {name!r} was removed (or renamed)")
            continue
        was, is_now = _type_of(field["schema"]), _type_of(now[name]["schema"])
        if now[name]["required"] and not field["required"]:
            problems.append(f"field {name!r} became required")
        elif was != is_now:
            problems.append(
                f"field {name!r} changed type: {json.dumps(was, sort_keys=True)}"
                f" -> {json.dumps(is_now, sort_keys=True)}"
            )
        elif field["schema"].get("default") != now[name]["schema"].get("default"):
            problems.append(
                f"field {name!r} changed its default: {field['schema'].get('default')!r} -> "
                f"{now[name]['schema'].get('default')!r} (records without it change meaning)"
            )
    for name, field in now.items():
        if name not in before and field["required"]:
            problems.append(f"new field {name!r} is required (new fields must be optional)")
    return [f"{current['topic']}: {problem}" for problem in problems]


def _type_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "default"}


def _path(event_type: type[Event]) -> Path:
    return CONTRACT_DIR / f"{event_type.TOPIC}.json"


def _render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check(event_types: Sequence[type[Event]] = EVENT_TYPES) -> tuple[list[str], list[Path]]:
    """(breaking changes, snapshots that are missing or out of date)."""
    problems: list[str] = []
    stale: list[Path] = []
    for event_type in event_types:
        path, current = _path(event_type), snapshot(event_type)
        if not path.exists():
            stale.append(path)
            continue
        recorded = json.loads(path.read_text())
        problems += breaking_changes(recorded, current)
        if _render(recorded) != _render(current):
            stale.append(path)
    return problems, stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.contract", description=__doc__)
    parser.add_argument("--check", action="store_true", help="report only; write nothing")
    args = parser.parse_args(argv)
    problems, stale = check()
    for problem in problems:
        print(f"breaking change: {problem}", file=sys.stderr)
    if problems:
        print(
            "A breaking change needs a new version on a new topic (.v2), not an edit of this one.",
            file=sys.stderr,
        )
        return 1
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(REPO_ROOT)} (run python -m shared.contract)")
        return 1 if stale else 0
    CONTRACT_DIR.mkdir(parents=True, exist_ok=True)
    for event_type in EVENT_TYPES:
        _path(event_type).write_text(_render(snapshot(event_type)))
    for path in stale:
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
