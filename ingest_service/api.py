"""HTTP endpoints of the ingest service: thin, they parse, delegate and answer."""

import asyncio
from typing import Annotated, Final

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from ingest_service.exceptions import (
    BodyTooLargeError,
    MissingIdempotencyKeyError,
    UnauthorizedError,
)
from ingest_service.publisher import Published
from ingest_service.schemas import Accepted, IgnoredUpdate, RecordMessageRequest
from ingest_service.service import IngestService
from shared.auth import bearer_token, key_is_valid
from shared.problems import problem
from shared.telegram import Ignored

SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name

router = APIRouter()


def get_service(request: Request) -> IngestService:
    """The process's ingest service, made in the lifespan."""
    service: IngestService = request.state.service
    return service


ServiceDep = Annotated[IngestService, Depends(get_service)]


def require_api_key(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Refuse a write without a valid `Authorization: Bearer <key>`."""
    if not key_is_valid(bearer_token(authorization), request.state.settings.api_keys):
        raise UnauthorizedError("a valid API key is required: Authorization: Bearer <key>")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing one over `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"the body is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(f"the body is over the limit of {limit} bytes")
    return bytes(body)


def _json(payload: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _accepted(published: Published, status: int) -> Response:
    return _json(
        {"event_id": published.event_id, "seq": published.seq, "duplicate": published.duplicate},
        status,
    )


@router.post(
    "/telegram/{bot_id}/webhook",
    summary="Telegram webhook (give this URL and the secret token to setWebhook)",
    responses={200: {"model": Accepted | IgnoredUpdate}},
)
async def telegram_webhook(bot_id: str, request: Request, service: ServiceDep) -> Response:
    """Store an Update; answers only after JetStream has acknowledged its event."""
    service.check_webhook_secret(bot_id, request.headers.get(SECRET_HEADER))
    body = await read_body(request, request.state.settings.max_body_bytes)
    result = await service.accept_update(bot_id, body)
    if isinstance(result, Ignored):
        return _json({"ignored": result.reason})
    return _accepted(result, 200)


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
