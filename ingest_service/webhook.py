"""The Telegram webhook as a bare ASGI endpoint in front of the FastAPI app.

The webhook is the hot path: FastAPI's routing, dependency solving and middleware cost about three
times the whole of chatlog's own work per update (profiled with py-spy), so this endpoint speaks
ASGI directly and every other path goes on to FastAPI. Errors are the same problem+json.
"""

import logging
import re
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_service.exceptions import BodyTooLargeError, ClientDisconnectedError
from ingest_service.publisher import Published
from ingest_service.service import IngestService
from shared.problems import PROBLEM_JSON, ProblemError, problem_body, problem_parts
from shared.telegram import Ignored

WEBHOOK_PATH: Final = re.compile(r"/telegram/(?P<bot_id>[^/]+)/webhook")
SECRET_HEADER: Final = b"x-telegram-bot-api-secret-token"

_JSON: Final = [(b"content-type", b"application/json")]
_log = logging.getLogger(__name__)


class WebhookEndpoint:
    """`POST /telegram/{bot_id}/webhook`; any other request goes to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the webhook, or hand the request on."""
        match = WEBHOOK_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = await self._answer(scope, receive, match["bot_id"])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(
        self, scope: Scope, receive: Receive, bot_id: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["method"] != "POST":
            allow = [(b"allow", b"POST"), (b"content-type", PROBLEM_JSON.encode())]
            return 405, allow, problem_body(405, "the webhook takes POST only")
        service: IngestService = scope["state"]["service"]
        headers = dict(scope["headers"])
        secret = headers.get(SECRET_HEADER)
        try:
            service.check_webhook_secret(bot_id, secret.decode("latin-1") if secret else None)
            body = await read_body(receive, headers.get(b"content-length"), service.max_body_bytes)
            result = await service.accept_update(bot_id, body)
        except ProblemError as exc:
            return problem_parts(exc)
        except Exception:  # noqa: BLE001 - a bug still answers problem+json, and is logged
            _log.exception("webhook of bot %s failed", bot_id)
            return 500, [(b"content-type", PROBLEM_JSON.encode())], problem_body(500)
        return 200, _JSON, _result_body(result)


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The request body, refusing one over `limit` bytes without reading it all."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"the body is over the limit of {limit} bytes")
    body = b""
    more = True
    while more:
        message: Message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnectedError("the client went away before sending the whole body")
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLargeError(f"the body is over the limit of {limit} bytes")
        more = message.get("more_body", False)
    return body


def _result_body(result: Published | Ignored) -> bytes:
    if isinstance(result, Ignored):
        return orjson.dumps({"ignored": result.reason})
    return orjson.dumps(result)  # the dataclass's fields: {"event_id", "seq", "duplicate"}
