"""Serve an ASGI app on loopback from inside a running event loop (tests, stand-ins)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago.

    Racy by nature (someone else may take it before it is bound again); prefer
    :func:`serve_app` with ``port=0`` where the server itself can pick the port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _InTaskServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone.

    Stock ``Server.serve`` swaps SIGINT/SIGTERM handlers while it runs, which would
    swallow Ctrl-C in a test session that merely hosts it in a task.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, host: str = LOOPBACK, port: int = 0, *, startup_timeout_s: float = 10.0
) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn in a task of the current loop; yield its base URL.

    ``port=0`` lets the OS pick a free port (no race). The server is stopped, and its
    task awaited, when the block exits.
    """
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = _InTaskServer(config)
    task = asyncio.create_task(_serve(server), name=f"uvicorn-{host}:{port}")
    try:
        await _wait_started(server, task, startup_timeout_s)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10.0)


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exit_:
        # uvicorn calls sys.exit() when it cannot bind; a SystemExit escaping a task
        # would stop the whole event loop (and the test session) instead of this server.
        raise RuntimeError(f"uvicorn exited with status {exit_.code}") from None


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None], timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not server.started:
        if task.done():
            error = task.exception() if not task.cancelled() else None
            raise RuntimeError(f"uvicorn failed to start on {server.config.host}") from error
        if loop.time() > deadline:
            raise TimeoutError(f"uvicorn did not start within {timeout_s}s")
        await asyncio.sleep(0.01)
