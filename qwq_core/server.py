"""The composition root of ``qwq up``: store + collectors + REST + /metrics + dashboard on one port.

``qwq up`` owns the DuckDB file (DuckDB allows one writing process per file). It announces itself in a small
JSON file next to the store (``qwq.server.json``: URL and PID) so that :func:`qwq_core.connect` in any
other process — a notebook, ``qwq query`` — reads live data through the server instead of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from types import FrameType

import uvicorn
from a2wsgi import WSGIMiddleware
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from qwq_core import __version__
from qwq_core.announce import Announcement, announcement_path
from qwq_core.api.auth import TokenAuth
from qwq_core.api.exposition import render
from qwq_core.api.routes import router
from qwq_core.collector import ConfiguredCollector, build_collectors
from qwq_core.errors import ConfigError, ConfigIssue, QueryError, QwqError, error_body, http_status
from qwq_core.runtime import Runtime
from qwq_core.services import Service, ServiceContext, build_services, routers
from qwq_core.settings import Settings
from qwq_core.store.base import Store
from qwq_core.store.local import LocalStore
from qwq_core.writer import BufferedWriter

log = logging.getLogger(__name__)


def build_app(
    store: Store,
    *,
    token: str | None = None,
    runtime: Runtime | None = None,
    dashboard: bool = True,
    refresh: timedelta = timedelta(seconds=5),
    extra_routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The ASGI app: REST under ``/api/v1``, ``/metrics``, OpenAPI at ``/docs``, the dashboard at ``/``.

    With a ``runtime`` the app's lifespan runs it (collectors, writer, upkeep) and stops it on shutdown.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop), name="runtime") if runtime else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task

    app = FastAPI(
        title="qwq",
        version=__version__,
        description="Metrics, events and SQL over qwq's store. Tables come as JSON, Arrow IPC, Parquet or CSV.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.runtime = runtime
    app.state.started = time.time()
    app.state.store_name = str(getattr(store, "path", type(store).__name__))

    @app.exception_handler(QwqError)
    async def qwq_error(_: Request, error: QwqError) -> JSONResponse:
        return JSONResponse(error_body(error), status_code=http_status(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI validates parameters before qwq sees them: answer in qwq's shape, as bad input (400).
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" + (f" (got {e['input']!r})" if "input" in e else "")
            for e in error.errors()
        )
        return JSONResponse(error_body(QueryError(reasons)), status_code=400)

    app.include_router(router)
    for extra in extra_routers:  # services' routes (alerts, silences, …), also under /api/v1
        app.include_router(extra, prefix="/api/v1")

    @app.get("/metrics", tags=["server"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Latest value of every stored series plus qwq's own process metrics, in Prometheus format."""
        body, content_type = render(store, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    if dashboard:

        def build_dashboard() -> ASGIApp:
            from dashboards import create_dashboard  # the composition root is the one place that knows the UI

            # a2wsgi types its scopes more narrowly than starlette's ASGIApp; they are the same protocol.
            return WSGIMiddleware(create_dashboard(store, refresh=refresh).server)  # type: ignore[return-value]

        app.mount("/", Deferred(build_dashboard))
    app.add_middleware(TokenAuth, token=token)
    return app


class Deferred:
    """An ASGI app built on its first request: Dash and plotly cost ~35 MB that a server nobody looks at
    need not carry."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    def _built(self) -> ASGIApp:
        with self._lock:
            if self._app is None:
                self._app = self._build()
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app if self._app is not None else await asyncio.to_thread(self._built)  # not on the loop
        await app(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; a port in use is a clear configuration error, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = f"cannot listen on {host}:{port}: {exc.strerror} (another qwq running? try --port)"
        raise ConfigError([ConfigIssue("server", "server.port", reason)]) from exc
    sock.listen(2048)
    return sock


def public_url(sock: socket.socket) -> str:
    """The URL clients on this machine use for a socket (a wildcard address means loopback)."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _stop_requested(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # a requested stop is a clean exit


def serve(settings: Settings, *, on_ready: Callable[[str], None] | None = None, access_log: bool = False) -> None:
    """Run ``qwq up`` until interrupted: open the store, start collectors, serve HTTP."""
    store = LocalStore(settings.store_path, settings=settings.store)
    announcement_file = announcement_path(settings.store_path)
    collectors: list[ConfiguredCollector] = []
    services: list[Service] = []
    try:
        sock = bind(settings.server.host, settings.server.port)  # a busy port fails before anything starts
        url = public_url(sock)
        writer = BufferedWriter(store)
        collectors = build_collectors(settings, writer.emit)
        services = build_services(ServiceContext(settings, store, writer))
        runtime = Runtime(settings, store, collectors, writer, services)
        app = build_app(store, token=settings.server.token_value(), runtime=runtime, extra_routers=routers(services))
        Announcement(url, os.getpid(), str(settings.store_path)).write(announcement_file)
        if on_ready:
            on_ready(url)
        config = uvicorn.Config(app, log_level=settings.log_level, access_log=access_log, timeout_graceful_shutdown=5)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal into the handler that was
        # there before it: make that handler unwind through the cleanup below instead of killing the process.
        previous = {sig: signal.signal(sig, _stop_requested) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except BaseException:
        for collector in collectors:  # the runtime closes them after a normal run
            collector.close()
        for service in services:
            service.close()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            if (found := Announcement.read(announcement_file)) is None or found.pid == os.getpid():
                announcement_file.unlink()
        store.close()
