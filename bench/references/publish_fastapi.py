"""Reference, not chatlog: the raw limit on FastAPI, a route awaiting `js.publish` of the body."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

state: dict[str, object] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    nc = await nats.connect(os.environ["BENCH_NATS_URL"])
    state["js"] = nc.jetstream()
    yield
    await nc.close()


app = FastAPI(lifespan=lifespan)


@app.post("/telegram/{bot_id}/webhook")
async def webhook(bot_id: str, request: Request) -> Response:
    body = await request.body()
    update = orjson.loads(body)
    ack = await state["js"].publish(  # type: ignore[attr-defined]
        f"{os.environ['BENCH_SUBJECT']}.{bot_id}",
        body,
        headers={"Nats-Msg-Id": f"{bot_id}:{update['update_id']}"},
    )
    return Response(orjson.dumps({"seq": ack.seq}), media_type="application/json")
