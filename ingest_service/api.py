"""HTTP endpoints of the ingest service but the webhook (`webhook.py`): parse, delegate, answer."""

import asyncio
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from ingest_service.exceptions import MissingIdempotencyKeyError, UnauthorizedError
from ingest_service.publisher import Published
from ingest_service.schemas import Accepted, RecordMessageRequest
from ingest_service.service import IngestService
from shared.auth import bearer_token, key_is_valid
from shared.problems import problem

router = APIRouter()


async def get_service(request: Request) -> IngestService:
    """The process's ingest service, made in the lifespan."""
    service: IngestService = request.state.service
    return service


ServiceDep = Annotated[IngestService, Depends(get_service)]


async def require_api_key(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Refuse a write without a valid `Authorization: Bearer <key>`."""
    if not key_is_valid(bearer_token(authorization), request.state.settings.api_keys):
        raise UnauthorizedError("a valid API key is required: Authorization: Bearer <key>")


def _json(payload: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _accepted(published: Published, status: int) -> Response:
    # orjson writes the dataclass as its fields: {"event_id", "seq", "duplicate"}.
    return Response(orjson.dumps(published), status_code=status, media_type="application/json")


@router.post(
    "/v1/messages",
    status_code=202,
    summary="Record a message (e.g. the bot's own reply)",
    responses={202: {"model": Accepted}},
    dependencies=[Depends(require_api_key)],
)
async def record_message(
    message: RecordMessageRequest,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Publish a message; the same `Idempotency-Key` gives the same event, stored once."""
    if not idempotency_key:
        raise MissingIdempotencyKeyError("send an Idempotency-Key header, unique per message")
    return _accepted(await service.record_message(message, idempotency_key), 202)


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    """Always ok while the process serves HTTP."""
    return {"status": "ok"}


@router.get("/readyz", summary="NATS is connected and the stream reachable")
async def readyz(request: Request) -> Response:
    """Ready when JetStream answers for the event stream."""
    try:
        await asyncio.wait_for(request.state.check_stream(), timeout=2)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return problem(503, f"event store unreachable: {type(exc).__name__}: {exc}")
    return _json({"status": "ready"})
