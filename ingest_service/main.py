"""Composition root of the ingest service: settings, NATS connection, app."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from faststream.nats import NatsBroker
from nats.js.api import StreamInfo

from ingest_service.api import router
from ingest_service.config import IngestSettings
from ingest_service.publisher import EventPublisher
from ingest_service.service import IngestService
from ingest_service.webhook import WebhookEndpoint
from shared.problems import install_problem_handlers
from shared.runtime import freeze_startup_objects
from shared.stream import ensure_stream


class State(TypedDict):
    """What the lifespan hands to requests (`request.state`)."""

    settings: IngestSettings
    service: IngestService
    check_stream: Callable[[], Awaitable[StreamInfo]]


def create_app(settings: IngestSettings) -> WebhookEndpoint:
    """The ingest ASGI app: the webhook in front of the FastAPI app (`.app`) for the rest.

    It connects to NATS and ensures the stream when it starts.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        broker = NatsBroker(
            settings.nats_servers,
            allow_reconnect=True,
            max_reconnect_attempts=-1,  # never give up: publishes fail fast with 503 meanwhile
            reconnect_time_wait=settings.nats_reconnect_wait,  # type: ignore[arg-type]
            connect_timeout=2,
            logger=None,
        )
        await broker.start()
        try:
            nc = broker.connection
            js = nc.jetstream()
            await ensure_stream(js, settings)
            publisher = EventPublisher(
                nc,
                stream=settings.stream,
                subject_prefix=settings.subject_prefix,
                timeout=settings.publish_timeout,
            )
            await publisher.start()

            async def check_stream() -> StreamInfo:
                return await js.stream_info(settings.stream)

            freeze_startup_objects()
            yield {
                "settings": settings,
                "service": IngestService(settings, publisher),
                "check_stream": check_stream,
            }
        finally:
            await broker.stop()  # closes the connection, and the publisher's subscription

    app = FastAPI(
        title="chatlog ingest",
        summary="Telegram webhooks and the write API; every accepted write is in JetStream.",
        lifespan=lifespan,
        # Its native OpenTelemetry looks up the global providers on every request; none is set.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    app.include_router(router)
    return WebhookEndpoint(app)


def app_from_environment() -> WebhookEndpoint:
    """App factory for uvicorn: settings from `CHATLOG_*` variables."""
    return create_app(IngestSettings())
