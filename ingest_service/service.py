"""What the ingest service does with a request: check it, make the event, publish it."""

import hmac
import uuid
from datetime import UTC, datetime
from typing import Final

import orjson

from ingest_service.config import IngestSettings
from ingest_service.exceptions import (
    BodyTooLargeError,
    EventStoreUnavailableError,
    InvalidJSONError,
    InvalidUpdateError,
    UnauthorizedError,
    UnknownBotError,
)
from ingest_service.publisher import (
    EventPublisher,
    EventTooLargeError,
    Published,
    PublishFailedError,
)
from ingest_service.schemas import RecordMessageRequest
from shared.errors import UpdateValidationError
from shared.events import (
    ChatInfo,
    EventSource,
    MessageData,
    MessageEdited,
    MessageReceived,
    Sender,
)
from shared.telegram import Ignored, map_update

_API_NAMESPACE: Final = uuid.UUID("6f1d5c3e-2b9a-4c1e-9a57-3f0c2d8e7b41")


def api_event_id(bot_id: str, idempotency_key: str) -> str:
    """The event id of an API write: the same key (per bot) always gives the same id."""
    return f"api:{bot_id}:{uuid.uuid5(_API_NAMESPACE, idempotency_key)}"


class IngestService:
    """Turns webhooks and API writes into published events."""

    def __init__(self, settings: IngestSettings, publisher: EventPublisher) -> None:
        self._publisher = publisher
        self.max_body_bytes = settings.max_body_bytes
        self._retry_after = str(settings.retry_after_seconds)
        self._secrets = {
            bot: secret.get_secret_value().encode()
            for bot, secret in settings.telegram_secrets.items()
        }

    def check_webhook_secret(self, bot_id: str, token: str | None) -> None:
        """Raise unless `bot_id` is configured and `token` is its secret (constant time)."""
        secret = self._secrets.get(bot_id)
        if secret is None:
            raise UnknownBotError(f"no webhook is configured for bot {bot_id!r}")
        if token is None or not hmac.compare_digest(token.encode(), secret):
            raise UnauthorizedError("missing or wrong X-Telegram-Bot-Api-Secret-Token")

    async def accept_update(self, bot_id: str, body: bytes) -> Published | Ignored:
        """Parse a webhook body (once), map it and publish the event."""
        try:
            update = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidJSONError(f"the body is not valid JSON: {exc}") from exc
        try:
            result = map_update(bot_id, update)
        except UpdateValidationError as exc:
            errors = [{"field": f, "message": m} for f, m in exc.problems]
            raise InvalidUpdateError(str(exc), errors=errors) from exc
        if isinstance(result, Ignored):
            return result
        return await self._publish(result)

    async def record_message(
        self, request: RecordMessageRequest, idempotency_key: str
    ) -> Published:
        """Publish a message recorded through the API."""
        sender = request.sender
        event = MessageReceived(
            event_id=api_event_id(request.bot_id, idempotency_key),
            occurred_at=request.sent_at,
            recorded_at=datetime.now(UTC),
            bot_id=request.bot_id,
            source=EventSource.API,
            data=MessageData(
                chat=ChatInfo(**request.chat.model_dump()),
                message_id=request.message_id,
                thread_id=request.thread_id,
                sender=Sender(**sender.model_dump()) if sender else None,
                sent_at=request.sent_at,
                kind=request.kind,
                text=request.text,
                reply_to_message_id=request.reply_to_message_id,
                entities=request.entities,
                original=request.telegram_message,
            ),
        )
        return await self._publish(event)

    async def _publish(self, event: MessageReceived | MessageEdited) -> Published:
        try:
            return await self._publisher.publish(event)
        except EventTooLargeError as exc:
            raise BodyTooLargeError(str(exc)) from exc
        except PublishFailedError as exc:
            raise EventStoreUnavailableError(
                f"the event was not acknowledged by the event store ({exc}); retry",
                headers={"Retry-After": self._retry_after},
            ) from exc
