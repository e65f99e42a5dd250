"""A fallback for records aiokafka cannot decode.

aiokafka decodes every header name as strict UTF-8 while it unpacks a fetched batch.
Kafka itself does not require that (a header name is bytes on the wire, and clients
such as librdkafka's send any bytes), so one record with such a name makes
``getmany`` raise on every poll: with the C extension a ``UnicodeDecodeError``, which
FastStream's consume loop does not expect (its task dies and is restarted, forever);
with the pure-Python decoder a ``CorruptRecordException``, retried forever. Either way
the partition, and every worker hashed to it, is stalled for good.

:func:`install` makes the consumer keep the raw bytes of each fetched partition and,
only when the normal decoder fails on them, read them again with a tolerant decoder
(Kafka's record format v2, header names decoded with ``surrogateescape`` so the exact
bytes are recoverable). The record then reaches our code like any other, and the
consumer dead-letters it with its origin and reason (or applies it, when it is a valid
event). Both of aiokafka's readers are covered: the C one raises the decode error
itself, the pure-Python one wraps it in a CorruptRecordException. The normal path is unchanged
(one extra object per fetched partition); aiokafka's version is pinned and the
fallback is tested against the real broker (tests/integration/test_unreadable_records.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import structlog
from aiokafka.consumer import fetcher
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import _DefaultRecordBatchPy, _DefaultRecordPy
from aiokafka.record.legacy_records import _LegacyRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

log = structlog.get_logger(__name__)

HEADER_NAME_ENCODING_ERRORS = "surrogateescape"
"""How an undecodable header name is turned into ``str``: lossless, so
``name.encode("utf-8", "surrogateescape")`` gives the bytes that were sent."""


class _RawMemoryRecords:
    """aiokafka's (C) MemoryRecords, keeping the bytes it was made from."""

    __slots__ = ("_inner", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._inner = MemoryRecords(raw)

    def size_in_bytes(self) -> int:
        return self._inner.size_in_bytes()

    def has_next(self) -> bool:
        return self._inner.has_next()

    def next_batch(self) -> Any:
        return self._inner.next_batch()


LOG_OVERHEAD = 12
"""Each batch starts with its base offset (int64) and its length (int32)."""
MAGIC_OFFSET = 16


def _batches(raw: bytes) -> Iterator[_DefaultRecordBatchPy | _LegacyRecordBatchPy]:
    """The complete batches in a fetch response's records (a fetch may end with a
    partial batch, which the next fetch returns whole)."""
    view, pos = memoryview(raw), 0
    while len(raw) - pos >= LOG_OVERHEAD:
        (length,) = struct.unpack_from(">i", raw, pos + 8)
        end = pos + LOG_OVERHEAD + length
        if end > len(raw):
            return
        piece = view[pos:end]
        magic = piece[MAGIC_OFFSET]
        yield _DefaultRecordBatchPy(piece) if magic >= 2 else _LegacyRecordBatchPy(piece, magic)
        pos = end


def _read_records(batch: _DefaultRecordBatchPy) -> Iterator[_DefaultRecordPy]:
    """The records of one (v2) batch, as Kafka's protocol defines them, without
    requiring header names to be UTF-8."""
    batch._maybe_uncompress()
    buffer, pos = batch._buffer, batch._pos
    for _ in range(batch._num_records):
        length, pos = decode_varint(buffer, pos)
        end = pos + length
        _attributes, pos = decode_varint(buffer, pos)
        timestamp_delta, pos = decode_varint(buffer, pos)
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _nullable_bytes(buffer, pos)
        value, pos = _nullable_bytes(buffer, pos)
        count, pos = decode_varint(buffer, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(count):
            name, pos = _nullable_bytes(buffer, pos)
            header_value, pos = _nullable_bytes(buffer, pos)
            decoded = (name or b"").decode("utf-8", HEADER_NAME_ENCODING_ERRORS)
            headers.append((decoded, header_value))
        pos = end
        timestamp = (
            batch.max_timestamp
            if batch.timestamp_type == batch.LOG_APPEND_TIME
            else batch.first_timestamp + timestamp_delta
        )
        yield _DefaultRecordPy(
            batch.base_offset + offset_delta,
            timestamp,
            batch.timestamp_type,
            key,
            value,
            headers,
        )


def _nullable_bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    return bytes(buffer[pos : pos + length]), pos + length


class _TolerantPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's PartitionRecords, falling back to :func:`_read_records` for the rest
    of a fetch when the normal decoder raises something other than a Kafka error."""

    next_fetch_offset: int

    def _unpack_records(self) -> Iterator[Any]:
        try:
            yield from super()._unpack_records()
        except Exception as error:
            # The C reader raises the UnicodeDecodeError itself; the pure-Python one
            # wraps it in CorruptRecordException. Any other Kafka error (a CRC mismatch)
            # is aiokafka's to handle: it refetches, as it should.
            undecodable = isinstance(error, UnicodeDecodeError) or isinstance(
                error.__cause__, UnicodeDecodeError
            )
            if isinstance(error, KafkaError) and not undecodable:
                raise
            raw = getattr(self._records, "raw", None)
            if raw is None or self._isolation_level == fetcher.READ_COMMITTED:
                raise
            log.warning(
                "kafka records undecodable by aiokafka; reading them tolerantly",
                topic=self._tp.topic,
                partition=self._tp.partition,
                from_offset=self.next_fetch_offset,
                error=repr(error),
            )
            try:
                yield from self._unpack_tolerantly(raw)
            except Exception:
                raise error from None  # truly corrupt: aiokafka's own error stands

    def _unpack_tolerantly(self, raw: bytes) -> Iterator[Any]:
        for batch in _batches(raw):
            if batch.is_control_batch:
                self.next_fetch_offset = max(self.next_fetch_offset, batch.next_offset)
                continue
            readable = (
                _read_records(batch) if isinstance(batch, _DefaultRecordBatchPy) else iter(batch)
            )
            for record in readable:
                if record.offset < self.next_fetch_offset:
                    continue
                consumer_record = self._consumer_record(self._tp, record)
                self.next_fetch_offset = record.offset + 1
                yield consumer_record
            self.next_fetch_offset = max(self.next_fetch_offset, batch.next_offset)


_installed = False


def install() -> None:
    """Make every aiokafka consumer in this process use the fallback. Idempotent."""
    global _installed
    if _installed:
        return
    fetcher.MemoryRecords = _RawMemoryRecords
    fetcher.PartitionRecords = _TolerantPartitionRecords
    _installed = True
