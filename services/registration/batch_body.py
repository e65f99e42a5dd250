"""The batch endpoint's body, read as it arrives: the enrolments are counted while the
JSON is parsed, so a batch over the limit is refused at its first extra request,
without reading (or holding) the rest. Nesting is bounded too: no request needs more
than a few levels, and a parser's work grows with the depth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import ijson

MAX_DEPTH = 32
_SCALARS = frozenset({"string", "number", "boolean", "null"})


class TooManyRequests(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} enrolments per batch")


class NotJson(Exception):
    pass


@dataclass
class _Level:
    is_array: bool
    key: str | None = None
    holds_enrolments: bool = False


class _Counter:
    """Follows the document's structure from ijson's basic events: its depth, and the
    values of the top-level object's ``enrolments`` array."""

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests
        self.levels: list[_Level] = []
        self.count = 0

    def see(self, event: str, value: Any) -> None:
        if event == "map_key":
            self.levels[-1].key = value
            return
        if event in ("end_map", "end_array"):
            self.levels.pop()
            return
        parent = self.levels[-1] if self.levels else None
        if parent is not None and parent.holds_enrolments:
            self.count += 1
            if self.count > self.max_requests:
                raise TooManyRequests(self.max_requests)
        if event in _SCALARS:
            return
        enrolments = (
            event == "start_array"
            and len(self.levels) == 1
            and parent is not None
            and not parent.is_array
            and parent.key == "enrolments"
        )
        self.levels.append(_Level(is_array=event == "start_array", holds_enrolments=enrolments))
        if len(self.levels) > MAX_DEPTH:
            raise NotJson(f"the body nests deeper than {MAX_DEPTH} levels")


async def read(chunks: AsyncIterator[bytes], max_requests: int) -> Any:
    """The whole JSON document, or TooManyRequests as soon as ``enrolments`` holds one
    request more than ``max_requests``, or NotJson (not JSON, or nested too deep)."""
    events = ijson.sendable_list()
    parser = ijson.basic_parse_coro(events, use_float=True)
    builder = ijson.ObjectBuilder()
    counter = _Counter(max_requests)

    def take() -> None:
        for event, value in events:
            counter.see(event, value)
            builder.event(event, value)
        del events[:]

    try:
        async for chunk in chunks:
            if chunk:
                parser.send(chunk)
                take()
        parser.close()
        take()
    except ijson.JSONError:
        raise NotJson("the body is not valid JSON") from None  # the parser's text quotes it
    if not hasattr(builder, "value"):
        raise NotJson("the body is empty")
    return builder.value
