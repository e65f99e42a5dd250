"""Run a coroutine to completion from synchronous code, even inside a running event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Return the coroutine's result, like :func:`asyncio.run`.

    ``asyncio.run`` refuses to run while an event loop is already running in this
    thread (e.g. when a sync helper is called from an async pytest fixture), so in
    that case the coroutine runs on its own loop in a short-lived helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="infra-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
