"""Synchronous twins of remsvc's coroutine functions, made in one place.

Scripts, the CLI and notebooks call ``run_commands_sync``, ``ping_sync`` and the
like; each is :func:`synchronous` applied to its coroutine function. The twin runs
the coroutine on a fresh event loop and closes the channels that loop opened before
it returns. Inside a thread whose loop is already running (a Jupyter cell), the
coroutine runs on a fresh loop in a worker thread, because the calling thread cannot
wait on itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

__all__ = ["run_sync", "synchronous"]

P = ParamSpec("P")
T = TypeVar("T")


def run_sync(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine function ``main`` to completion from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="remsvc-sync") as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def synchronous(func: Callable[P, Awaitable[T]], doc: str | None = None) -> Callable[P, T]:
    """The blocking twin of the coroutine function ``func``: same arguments, same result.

    Channels opened on the twin's own event loop are closed before it returns, so a
    twin leaves nothing behind. ``doc`` replaces the docstring copied from ``func``.
    """

    @functools.wraps(func)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        async def main() -> T:
            from remsvc_core.channels import close_channels  # grpc only when used

            try:
                return await func(*args, **kwargs)
            finally:
                await close_channels()

        return run_sync(main)

    twin.__name__ = twin.__qualname__ = f"{func.__name__}_sync"
    twin.__doc__ = doc or (
        f":func:`{func.__name__}` for code without an event loop (scripts, the CLI, "
        f"notebooks).\n\n{func.__doc__ or ''}"
    )
    return twin
