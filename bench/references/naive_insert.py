"""Reference, not chatlog: the naive fix, one INSERT per webhook into PostgreSQL (asyncpg pool)."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

state: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(os.environ["BENCH_DATABASE_URL"], min_size=4, max_size=16)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS naive_updates (bot_id text, update_id bigint, chat_id bigint,"
        " message_id bigint, body jsonb, PRIMARY KEY (bot_id, update_id))"
    )
    state["pool"] = pool
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/telegram/{bot_id}/webhook")
async def webhook(bot_id: str, request: Request) -> Response:
    body = await request.body()
    update = orjson.loads(body)
    message = update.get("message") or {}
    await state["pool"].execute(
        "INSERT INTO naive_updates VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING",
        bot_id,
        update["update_id"],
        (message.get("chat") or {}).get("id"),
        message.get("message_id"),
        body.decode(),
    )
    return Response(b'{"ok": true}', media_type="application/json")
