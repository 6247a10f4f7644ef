"""Command line entry point: ``python -m sandbox --port 8700 --latency-ms 50-300 ...``."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from .server import LISTENING_PREFIX, SANDBOX, create_app
from .settings import SandboxSettings, settings_from_sources


async def serve(settings: SandboxSettings) -> None:
    """Run the sandbox until SIGINT or SIGTERM."""
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        # No access log: writing one line per request would cost more than answering it.
        access_log=None,
        # Free the handler of a client that gave up (injected timeouts hold requests for long).
        handler_cancellation=True,
        # Held requests must not delay a stop by timeout_hold_s.
        shutdown_timeout=1.0,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Load tests open hundreds of connections at once; the default backlog of 128 drops some.
        site = web.TCPSite(runner, settings.host, settings.port, backlog=2048)
        await site.start()
        host, port = runner.addresses[0][:2]
        app[SANDBOX].record_port(port)
        shown_host = f"[{host}]" if ":" in host else host
        print(f"{LISTENING_PREFIX}http://{shown_host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _run(main_coroutine) -> None:
    """Run on uvloop's event loop where it is installed (about a tenth less of the sandbox's CPU), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_coroutine)
    else:
        uvloop.run(main_coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options from flags and environment and serve; returns the exit status."""
    try:
        settings = settings_from_sources(argv)
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    try:
        _run(serve(settings))
    except OSError as exc:
        # Typically the port is taken; a one-line reason beats a traceback for the caller to read.
        print(f"sandbox: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
