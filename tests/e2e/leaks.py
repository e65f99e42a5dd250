"""Finding a cohort's personal data where it must not be: full NIKs, phone numbers and
email addresses, searched for in any text (a log line, a record, a response body)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devtools.cohort import CohortEntry

_DIGIT_RUN = re.compile(r"\+?\d{9,16}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def national_number(digits: str) -> str:
    """A phone number's digits after the country code or trunk prefix (812...)."""
    digits = digits.lstrip("+")
    if digits.startswith("62"):
        return digits[2:]
    return digits.removeprefix("0")


@dataclass(frozen=True)
class PersonalData:
    niks: frozenset[str]
    phones: frozenset[str]
    emails: frozenset[str]

    @classmethod
    def of(cls, entries: Sequence[CohortEntry]) -> PersonalData:
        workers = [entry.worker for entry in entries]
        return cls(
            niks=frozenset(w.nik for w in workers if len(w.nik) == 16 and w.nik.isdigit()),
            phones=frozenset(national_number(re.sub(r"\D", "", w.phone)) for w in workers),
            emails=frozenset(str(w.email).lower() for w in workers if w.email),
        )

    def found(self, text: str) -> set[str]:
        """The kinds of personal data in ``text``: 'nik', 'phone', 'email'."""
        kinds = set()
        for run in _DIGIT_RUN.findall(text):
            if run.lstrip("+") in self.niks:
                kinds.add("nik")
            elif national_number(run) in self.phones:
                kinds.add("phone")
        if any(address.lower() in self.emails for address in _EMAIL.findall(text)):
            kinds.add("email")
        return kinds


@dataclass
class Findings:
    """Where personal data was found that may not be there: place -> kinds."""

    places: dict[str, set[str]] = field(default_factory=dict)
    scanned: int = 0

    def scan(self, place: str, text: str, data: PersonalData, allowed: set[str]) -> None:
        self.scanned += 1
        kinds = data.found(text) - allowed
        if kinds:
            self.places.setdefault(place, set()).update(kinds)


def log_lines(folder: Path) -> Iterable[tuple[str, str]]:
    for path in sorted(folder.iterdir()):
        with path.open(errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                yield f"{path.name}:{number}", line


async def topic_records(bootstrap: str, prefix: str) -> Iterable[tuple[str, str]]:
    """Every record (key, value and headers, as text) on every topic under ``prefix``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[str, str]] = []
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in names
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=2000)
            for tp, records in batches.items():
                for record in records:
                    parts = [record.key or b"", record.value or b""]
                    parts += [
                        name.encode() + b"=" + (value or b"") for name, value in record.headers
                    ]
                    text = b"\n".join(parts).decode(errors="replace")
                    found.append((f"{tp.topic}[{tp.partition}]@{record.offset}", text))
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return found


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()
