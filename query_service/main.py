"""Composition root of the query service: the HTTP app and the projector, wired from settings."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from nats.aio.client import Client as NatsClient
from starlette.types import ASGIApp, Receive, Scope, Send

from query_service import api, fastpath, repository
from query_service.checkpoints import CheckpointWatcher
from query_service.config import QuerySettings
from query_service.db import create_pool
from query_service.projector import Projector
from query_service.subscribers import consume, gap_check, subscribe
from shared.problems import install_problem_handlers
from shared.runtime import freeze_startup_objects

_log = logging.getLogger(__name__)
_OPTIONAL_NATS_WAIT = 5.0
"""Seconds the API waits for NATS at start before serving reads without the stream's state."""


async def connect_nats(settings: QuerySettings, *, required: bool) -> NatsClient | None:
    """A NATS connection that reconnects for ever; None if unreachable and not `required`.

    With `max_reconnect_attempts=-1` nats-py also retries the first connection for ever: fine for
    the projector (`required`), which has nothing to do without NATS, but the API must start and
    serve reads, so its first attempt is bounded.
    """
    connecting = nats.connect(
        servers=settings.nats_servers,
        connect_timeout=2,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
    try:
        if required:
            return await connecting
        return await asyncio.wait_for(connecting, timeout=_OPTIONAL_NATS_WAIT)
    except (OSError, TimeoutError, nats.errors.Error):
        if required:
            raise
        _log.warning("NATS unreachable: the API serves reads without the stream's state")
        return None


class QueryAPI(FastAPI):
    """The FastAPI app, with the hot reads answered in front of all of it.

    `fast_reads` sees every request first; what it does not answer goes through FastAPI's whole
    stack (its middleware, error handlers and routes) as usual. None: FastAPI answers everything.
    """

    fast_reads: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request: the fast path first, if there is one."""
        if self.fast_reads is not None and scope["type"] == "http":
            await self.fast_reads(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def behind_fast_reads(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling of a request."""
        await super().__call__(scope, receive, send)


def create_app(settings: QuerySettings) -> QueryAPI:
    """The query API, with a lifespan that owns its pool, watcher and NATS connection."""
    source = api.CheckpointSource()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.asyncpg_dsn, size=settings.query_pool_size)

        async def poll() -> int:
            return await repository.read_checkpoint(pool, settings.projection_name)

        watcher = CheckpointWatcher(settings.asyncpg_dsn, settings.projection_name, poll)
        watcher.start()
        source.watcher = watcher
        client = await connect_nats(settings, required=False)
        app.state.query = api.QueryState(settings, pool, watcher, client)
        freeze_startup_objects()
        try:
            yield
        finally:
            await watcher.stop()
            if client is not None:
                await client.close()
            await pool.close()

    # FastAPI's native OpenTelemetry looks up the global providers on every request (~5 % of a
    # read's CPU, profiled); chatlog configures none.
    off: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    app = QueryAPI(title="chatlog query", version="1", lifespan=lifespan, telemetry=off)
    install_problem_handlers(app)
    app.include_router(api.router)
    app.include_router(api.health)
    app.add_middleware(api.SeqHeaderMiddleware, watcher=source)
    app.fast_reads = fastpath.FastReads(app.behind_fast_reads, owner=app)
    return app


async def run_projector(settings: QuerySettings) -> None:
    """Run the projector until cancelled."""
    client = await connect_nats(settings, required=True)
    assert client is not None  # noqa: S101 - required=True raises instead
    projector = Projector(
        settings.asyncpg_dsn,
        settings.projection_name,
        park_attempts=settings.projector_park_attempts,
        retry_max_backoff=settings.projector_retry_max_backoff,
        gap_is_empty=gap_check(client.jetstream(), settings.stream),
    )
    try:
        subscription = await subscribe(client.jetstream(), settings)
        _log.info("projecting %s into %s", settings.stream, settings.projection_name)
        await consume(subscription, projector, settings)
    finally:
        await projector.close()
        await client.close()
