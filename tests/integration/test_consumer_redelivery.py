"""The real coverage service, as a process, on the real broker and PostgreSQL:

- killed after its database commit but before its offset commit, it re-reads the
  message on restart and changes nothing (the inbox makes redelivery harmless);
- poison messages go to the dead-letter topic and do not block the partition;
- a database outage while a message is in flight does not lose the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

import infra
from services.coverage.domain import policy_id_for
from services.registration.domain import participant_number
from shared import topics
from shared.dead_letters import DeadLetterNotice
from shared.events import WorkerEnrolled, derive_event_id
from shared.faults import CRASH_EXIT_CODE
from shared.kafka import ensure_topics
from tests.factories import worker_enrolled
from tests.integration.kafka_helpers import committed_offsets, eventually, read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = "coverage.worker-enrolled"
AGREEMENT = "KOTA-PASURUAN-DBHCHT"


def enrolled(n: int) -> WorkerEnrolled:
    """A valid WorkerEnrolled with ids of its own."""
    return worker_enrolled(
        event_id=uuid.uuid4(),
        correlation_id=f"corr-{uuid.uuid4().hex[:8]}",
        worker_id=uuid.uuid4(),
        participant_number=participant_number(n),
        request_id=f"req-{uuid.uuid4().hex[:8]}",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """One run of ``python -m services.coverage`` with its output in a file."""

    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_exit(self, timeout_s: float) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"the coverage service did not exit within {timeout_s} s"
            ) from None

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait (bounded), SIGKILL on timeout; the exit code of a clean stop."""
        if self.process.returncode is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10)
            return None


@dataclass
class Env:
    database_url: str
    topic_prefix: str
    kafka_bootstrap: str
    tmp_path: Path
    runs: int = 0

    @property
    def group(self) -> str:
        return f"{self.topic_prefix}{CONSUMER}"

    @property
    def enrolled_topic(self) -> str:
        return self.topic_prefix + topics.WORKER_ENROLLED

    @contextlib.asynccontextmanager
    async def coverage(
        self, crash_at: str | None = None, *, schedule: bool = False
    ) -> AsyncIterator[Service]:
        """Run the coverage service; stop it on the way out (its output is printed if the
        block failed, so pytest shows it)."""
        self.runs += 1
        env = {
            **os.environ,
            "PERISAI_DATABASE_URL": self.database_url,
            "PERISAI_TOPIC_PREFIX": self.topic_prefix,
            "PERISAI_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "PERISAI_HTTP_PORT": str(free_port()),
            "PERISAI_DB_POOL_MIN_SIZE": "1",
            # These tests count what the consumer posts; the schedule would bill this
            # month for the (past-dated) workers too. It is tested on its own
            # (tests/integration/test_coverage_lifecycle.py).
            "PERISAI_SCHEDULE_ENABLED": str(schedule).lower(),
            "PERISAI_SCHEDULE_INTERVAL_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PERISAI_CRASH_AT", None)
        if crash_at:
            env["PERISAI_CRASH_AT"] = crash_at
        log = self.tmp_path / f"coverage-{self.runs}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.coverage",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        service = Service(process, log)
        try:
            yield service
        except BaseException:
            print(f"----- coverage run {self.runs} output -----\n{service.output()}")
            raise
        finally:
            await service.stop()

    async def publish(
        self,
        *values: bytes | None,
        key: bytes | None = None,
        headers: list[list[tuple[str, bytes]]] | None = None,
    ) -> list[RecordMetadata]:
        """Send values to worker.enrolled on partition 0, in order, with an idempotent
        producer; return where each landed."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await asyncio.wait_for(producer.start(), 15)
        try:
            return [
                await asyncio.wait_for(
                    producer.send_and_wait(
                        self.enrolled_topic,
                        value,
                        key=key,
                        partition=0,
                        headers=headers[index] if headers else None,
                    ),
                    15,
                )
                for index, value in enumerate(values)
            ]
        finally:
            await producer.stop()

    async def committed(self) -> int | None:
        """The group's committed offset on partition 0 of worker.enrolled, if any."""
        offsets = await committed_offsets(self.kafka_bootstrap, self.group, self.enrolled_topic)
        # The subscriber also commits offset 0 on the partitions it holds but got nothing on.
        others = {p: o for p, o in offsets.items() if p != 0 and o != 0}
        assert not others, f"commits beyond records never sent: {others}"
        return offsets.get(0)

    async def wait_committed(self, offset: int, timeout_s: float, process: Service) -> None:
        async def probe() -> int | None:
            assert process.process.returncode is None, (
                f"the coverage service exited with {process.process.returncode}"
            )
            return await self.committed()

        await eventually(
            probe,
            lambda o: o is not None and o >= offset,
            timeout_s=timeout_s,
            interval_s=0.2,
            what=f"group {self.group} to commit offset {offset} on partition 0",
        )

    async def originals(self) -> dict[int, bytes | None]:
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT origin_offset, value FROM coverage.dead_letters WHERE consumer = $1",
                CONSUMER,
            )
            return {row["origin_offset"]: row["value"] for row in rows}
        finally:
            await conn.close()

    async def counts(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.database_url)
        try:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM coverage.policies) AS policies,
                          (SELECT count(*) FROM coverage.premium_ledger) AS ledger,
                          (SELECT count(*) FROM coverage.inbox WHERE consumer = $1) AS inbox,
                          (SELECT count(*) FROM coverage.outbox) AS outbox""",
                CONSUMER,
            )
            assert row is not None
            return dict(row)
        finally:
            await conn.close()


@pytest.fixture
async def env(database_url: str, topic_prefix: str, kafka_bootstrap: str, tmp_path: Path) -> Env:
    # The service creates its topics too; creating them first lets the test produce to
    # the same 4-partition topics before the service runs.
    await ensure_topics(kafka_bootstrap, [topic_prefix + t for t in topics.ALL_TOPICS])
    return Env(database_url, topic_prefix, kafka_bootstrap, tmp_path)


async def test_killed_after_db_commit_before_offset_commit_rereads_and_changes_nothing(
    env: Env,
) -> None:
    event = enrolled(1)
    [sent] = await env.publish(event.model_dump_json().encode(), key=event.kafka_key())

    # Run 1: dies (exit 86) right after the batch's transaction committed, before the
    # offset commit: exactly a kill -9 at the worst moment.
    async with env.coverage(crash_at=f"{CONSUMER}_after_commit") as run:
        code = await run.wait_exit(timeout_s=60)
        assert code == CRASH_EXIT_CODE, f"expected the crash point to fire, exit code {code}"
        after_crash = await env.counts()
        assert after_crash["policies"] == 1, after_crash
        assert after_crash["ledger"] == 1, after_crash
        assert after_crash["inbox"] == 1, after_crash
        committed = await env.committed()
        assert committed is None or committed <= sent.offset, (
            f"offset {committed} was committed before the crash: the test proves nothing"
        )

    # Run 2: no crash. It must re-read the message (nothing committed) and acknowledge it.
    async with env.coverage() as run:
        await env.wait_committed(sent.offset + 1, timeout_s=45, process=run)
        await eventually(
            env.counts,
            lambda c: c["outbox"] == 0,
            timeout_s=15,
            what="the relay to publish the outbox",
        )
        after_redelivery = await env.counts()
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete, so a clean
        # stop ends "killed by SIGTERM"; the log shows the orderly shutdown.
        assert await run.stop() == 0, "SIGTERM did not stop the service cleanly"
        assert '"service stopped"' in run.output(), "no orderly shutdown on SIGTERM"

    assert after_redelivery == {"policies": 1, "ledger": 1, "inbox": 1, "outbox": 0}
    policy_id = policy_id_for(event.worker_id, AGREEMENT)
    activated = await read_topic(
        env.kafka_bootstrap, env.topic_prefix + topics.POLICY_ACTIVATED, at_least=1
    )
    ids = [json.loads(m.value)["event_id"] for m in activated]
    assert ids == [str(derive_event_id("policy.activated", policy_id))], (
        f"expected exactly one PolicyActivated, got {ids}"
    )
    assert activated[0].key == str(event.worker_id).encode()
    assert json.loads(activated[0].value)["causation_id"] == str(event.event_id)
    posted = await read_topic(
        env.kafka_bootstrap, env.topic_prefix + topics.PREMIUM_POSTED, at_least=1
    )
    assert len({json.loads(m.value)["event_id"] for m in posted}) == len(posted) == 1, posted


async def test_poison_messages_are_dead_lettered_and_do_not_block(env: Env) -> None:
    event = enrolled(2)
    not_json = b"{this is not json"
    invalid = json.dumps({"event_type": "worker.enrolled", "worker_id": "nope"}).encode()
    sent = await env.publish(not_json, event.model_dump_json().encode(), invalid, None, key=b"k")
    bad = {0: not_json, 2: invalid, 3: None}  # offset -> value on the dead-letter topic

    async with env.coverage() as run:
        await env.wait_committed(sent[-1].offset + 1, timeout_s=45, process=run)
        await eventually(
            env.counts, lambda c: c["outbox"] == 0, timeout_s=15, what="the outbox to drain"
        )
        counts = await env.counts()

    assert [s.offset for s in sent] == [0, 1, 2, 3]
    assert counts["policies"] == 1 and counts["ledger"] == 1, counts
    assert counts["inbox"] == 4, "the valid event and the three dead letters are claimed"

    dlq = env.topic_prefix + topics.dead_letter_topic(topics.WORKER_ENROLLED)
    letters = await read_topic(env.kafka_bootstrap, dlq, at_least=3)
    assert len(letters) == 3, [m.value for m in letters]
    by_offset = {}
    for message in letters:
        headers = {name: value.decode() for name, value in message.headers}
        assert headers["dlq.origin.topic"] == env.enrolled_topic
        assert headers["dlq.origin.partition"] == "0"
        assert headers["dlq.consumer"] == CONSUMER
        assert headers["dlq.reason"], headers
        assert headers["dlq.failed_at"], headers
        by_offset[int(headers["dlq.origin.offset"])] = (message.value, headers["dlq.reason"])
        notice = DeadLetterNotice.model_validate_json(message.value)
        assert message.key == str(notice.letter_id).encode()
    assert await env.originals() == bad, "the records as received, in coverage's own table"
    for value, _ in by_offset.values():
        notice = DeadLetterNotice.model_validate_json(value)
        assert notice.original.kept_in == "coverage.dead_letters"
        original = bad[notice.origin.offset]
        assert notice.original.value_bytes == (None if original is None else len(original))
    assert "json" in by_offset[0][1].lower(), by_offset[0][1]
    assert "worker_id" in by_offset[2][1], by_offset[2][1]
    assert by_offset[3][1] == "null message value"


async def test_messages_that_would_stall_a_batch_are_handled_or_dead_lettered(env: Env) -> None:
    """Three ways one record used to stall or silently skip a whole batch: a header that
    is not UTF-8 (the batch failed in parsing, before any handler, and was skipped),
    garbage labelled application/json (decoded before the handler: nacked forever), and
    a valid message the database refuses (NUL in a text field: retried forever)."""
    odd_header, poison, last = enrolled(5), enrolled(6), enrolled(7)
    poison_value = poison.model_copy(update={"occupation": "pedagang\x00"}).model_dump_json()
    json_header = [("content-type", b"application/json")]
    sent = await env.publish(
        odd_header.model_dump_json().encode(),
        b"{not json",
        poison_value.encode(),
        last.model_dump_json().encode(),
        key=b"k",
        headers=[[("trace", b"\xff\xfe"), *json_header], json_header, json_header, json_header],
    )

    async with env.coverage() as run:
        await env.wait_committed(sent[-1].offset + 1, timeout_s=60, process=run)
        await eventually(
            env.counts, lambda c: c["outbox"] == 0, timeout_s=15, what="the outbox to drain"
        )
        counts = await env.counts()

    assert counts["policies"] == 2 and counts["ledger"] == 2, counts
    dlq = env.topic_prefix + topics.dead_letter_topic(topics.WORKER_ENROLLED)
    letters = await read_topic(env.kafka_bootstrap, dlq, at_least=2)
    reasons = {
        int(dict(m.headers)["dlq.origin.offset"]): dict(m.headers)["dlq.reason"].decode()
        for m in letters
    }
    assert set(reasons) == {sent[1].offset, sent[2].offset}, reasons
    assert "json" in reasons[sent[1].offset].lower()
    assert reasons[sent[2].offset].startswith("handler failed"), reasons


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def test_database_outage_does_not_lose_the_message(env: Env) -> None:
    """While the service's database refuses connections, a message is retried and nacked,
    not acknowledged; once the database is back it is applied and only then committed."""
    first, second = enrolled(3), enrolled(4)
    [sent_first] = await env.publish(first.model_dump_json().encode())
    name = _database_name(env.database_url)
    admin = await asyncpg.connect(infra.admin_dsn())
    try:
        async with env.coverage() as run:
            await env.wait_committed(sent_first.offset + 1, timeout_s=45, process=run)

            # Outage: no new connections to this database, and the open ones are cut.
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE datname = $1 AND pid <> pg_backend_pid()""",
                name,
            )
            [sent_second] = await env.publish(second.model_dump_json().encode())
            log_size = len(run.output())

            async def log_tail() -> str:
                committed = await env.committed()
                assert committed == sent_first.offset + 1, (
                    f"offset {committed} committed while the database was down: message lost"
                )
                return run.output()[log_size:]

            # Let one whole bounded-retry round fail (stamina gives up, the batch is
            # nacked) and the batch come round again: with an ack-on-error policy, this is
            # where the offset would have moved past the message.
            def retried_after_giving_up(text: str) -> bool:
                last_try = text.find('"retry_num": 4,')
                return last_try >= 0 and '"retry_num": 1,' in text[last_try:]

            await eventually(
                log_tail,
                retried_after_giving_up,
                timeout_s=30,
                interval_s=0.2,
                what="a failed retry round and the batch re-read during the outage",
            )
            committed = await env.committed()
            assert committed == sent_first.offset + 1, (
                f"offset {committed} committed while the database was down: message lost"
            )

            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await env.wait_committed(sent_second.offset + 1, timeout_s=45, process=run)
            counts = await env.counts()
            assert counts["policies"] == 2 and counts["ledger"] == 2, counts
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_the_running_service_bills_on_its_schedule_once_a_month(env: Env) -> None:
    """The schedule in the real process: this month's run, once, however many rounds
    pass (a round every 0.5 s here)."""
    async with env.coverage(schedule=True) as run:

        async def scheduled_runs() -> list[tuple[str, str]]:
            conn = await asyncpg.connect(env.database_url)
            try:
                rows = await conn.fetch(
                    """SELECT to_char(period, 'YYYY-MM') AS period, trigger
                       FROM coverage.billing_runs ORDER BY period"""
                )
            except asyncpg.UndefinedTableError:
                return []  # not migrated yet
            finally:
                await conn.close()
            return [(r["period"], r["trigger"]) for r in rows]

        runs = await eventually(
            scheduled_runs,
            lambda r: len(r) >= 1,
            timeout_s=30,
            interval_s=0.3,
            what="the scheduled billing runs",
        )
        await asyncio.sleep(2)  # four more rounds
        assert await scheduled_runs() == runs
        assert [trigger for _, trigger in runs] == ["schedule"]
        assert run.output().count("billing run finished") == 1
