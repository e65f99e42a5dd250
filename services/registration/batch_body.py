"""The batch endpoint's body, read as it arrives: the enrolments are counted while the
JSON is parsed, so a batch over the limit is refused at its first extra request,
without reading (or holding) the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ijson

ITEM = "enrolments.item"
_STARTS = frozenset({"start_map", "start_array", "string", "number", "boolean", "null"})


class TooManyRequests(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} enrolments per batch")


class NotJson(Exception):
    pass


async def read(chunks: AsyncIterator[bytes], max_requests: int) -> Any:
    """The whole JSON document, or TooManyRequests as soon as ``enrolments`` holds one
    request more than ``max_requests``, or NotJson."""
    events = ijson.sendable_list()
    parser = ijson.parse_coro(events, use_float=True)
    builder = ijson.ObjectBuilder()
    count = 0

    def take() -> None:
        nonlocal count
        for prefix, event, value in events:
            if prefix == ITEM and event in _STARTS:
                count += 1
                if count > max_requests:
                    raise TooManyRequests(max_requests)
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
