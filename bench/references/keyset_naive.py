"""Reference, not chatlog: the naive keyset history endpoint, a raw asyncpg query per request."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from fastapi import FastAPI
from fastapi.responses import Response

state: dict[str, asyncpg.Pool] = {}

_PAGE = (
    "SELECT message_id, thread_id, sender_id, sender_name, sender_username, sender_is_bot,"
    " sent_at, edited_at, kind, text, reply_to_message_id FROM messages"
    " WHERE bot_id = $1 AND chat_id = $2 AND message_id < $3 ORDER BY message_id DESC LIMIT $4"
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    state["pool"] = await asyncpg.create_pool(os.environ["BENCH_DATABASE_URL"], max_size=10)
    yield
    await state["pool"].close()


app = FastAPI(lifespan=lifespan)


@app.get("/messages/{bot_id}/{chat_id}")
async def page(bot_id: str, chat_id: int, before: int = 2**62, limit: int = 50) -> Response:
    rows = await state["pool"].fetch(_PAGE, bot_id, chat_id, before, limit)
    items = [dict(row) for row in rows]
    return Response(orjson.dumps({"items": items}), media_type="application/json")
