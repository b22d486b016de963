"""Query: a 50-message page at N messages (first page and 10,000 deep) and the chat list,
chatlog's API against the same keyset query issued raw through asyncpg."""

import asyncio

import asyncpg

from bench.harness import VENV_BIN, Series, Servers, start, wait_http, wrk
from chatlog.servers import free_port
from query_service.cursors import message_cursor
from query_service.db import migrate_async

BOT, CHAT, KEY = "bench", -1009000, "bench-key"

_FILL = """
INSERT INTO messages (bot_id, chat_id, message_id, thread_id, sender_id, sender_name,
    sender_username, sender_is_bot, sent_at, edited_at, kind, text, reply_to_message_id,
    original, seq, received_seq)
SELECT $1, $2, i, NULL, 1000 + i % 7, 'Sender ' || i % 7, NULL, false,
    timestamptz '2025-01-01' + i * interval '1 second', NULL, 'text',
    'message number ' || i || ' ' || repeat('lorem ipsum ', 8), NULL,
    jsonb_build_object('update_id', i, 'message', jsonb_build_object('message_id', i)), i, i
FROM generate_series($3::bigint, $4::bigint) AS i
"""
_CHAT = """
INSERT INTO chats (bot_id, chat_id, type, title, username, info_message_id, info_seq,
    message_count, first_message_at, last_message_at, last_message_id, last_message_preview)
SELECT $1, $2 - k, 'supergroup', 'Bench chat ' || k, NULL, 1, 1, CASE WHEN k = 0 THEN $3 ELSE 1 END,
    timestamptz '2025-01-01', timestamptz '2025-01-01' + (k + $3) * interval '1 second', $3, 'hi'
FROM generate_series(0, 199) AS k
"""


async def fill(database_url: str, messages: int) -> None:
    """N messages in one chat (plus 199 small chats), straight into the read models."""
    await migrate_async(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        for start_id in range(1, messages + 1, 200_000):
            await conn.execute(_FILL, BOT, CHAT, start_id, min(messages, start_id + 199_999))
        await conn.execute(_CHAT, BOT, CHAT, messages)
        await conn.execute(
            "INSERT INTO projection_checkpoints (name, seq) VALUES ('read_models', $1)", messages
        )
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("VACUUM ANALYZE chats")
    finally:
        await conn.close()


def run(servers: Servers, *, messages: int, runs: int, seconds: float) -> dict[str, object]:
    """Fill, then measure both apps `runs` times, interleaved; medians and ratios."""
    asyncio.run(fill(servers.database_url, messages))
    deep = messages - 10_000
    chatlog_port, naive_port = free_port(), free_port()
    auth = {"Authorization": f"Bearer {KEY}"}
    cases = {
        "chatlog first page": (chatlog_port, f"/v1/bots/{BOT}/chats/{CHAT}/messages?limit=50"),
        "chatlog 10k deep": (
            chatlog_port,
            f"/v1/bots/{BOT}/chats/{CHAT}/messages?limit=50&before={message_cursor(deep)}",
        ),
        "chatlog chat list": (chatlog_port, f"/v1/chats?bot_id={BOT}&limit=50"),
        "naive first page": (naive_port, f"/messages/{BOT}/{CHAT}?limit=50"),
        "naive 10k deep": (naive_port, f"/messages/{BOT}/{CHAT}?limit=50&before={deep}"),
    }
    series = {name: Series() for name in cases}
    peak_rss = {"chatlog query": 0, "naive keyset": 0}
    # Both apps start once; every case is warmed up once, then measured in `runs` rounds, each
    # round starting at another case.
    query = start(
        [str(VENV_BIN / "chatlog"), "query"],
        {"CHATLOG_DATABASE_URL": servers.database_url, "CHATLOG_NATS_URL": servers.nats_url,
         "CHATLOG_API_KEYS": f'["{KEY}"]', "CHATLOG_QUERY_PORT": str(chatlog_port),
         "CHATLOG_LOG_LEVEL": "warning"},
        "query",
    )  # fmt: skip
    naive = start(
        [str(VENV_BIN / "uvicorn"), "--port", str(naive_port), "--no-access-log",
         "--log-level", "warning", "bench.references.keyset_naive:app"],
        {"BENCH_DATABASE_URL": servers.database_url},
        "keyset",
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{chatlog_port}/readyz", query)
        wait_http(f"http://127.0.0.1:{naive_port}/docs", naive)
        names = list(cases)
        for port, path in cases.values():
            wrk(f"http://127.0.0.1:{port}{path}", 1, script=None, headers=auth)  # warm-up
        for round_ in range(runs):
            shift = round_ * len(names) // runs
            for name in names[shift:] + names[:shift]:
                port, path = cases[name]
                load = wrk(f"http://127.0.0.1:{port}{path}", seconds, script=None, headers=auth)
                series[name].add(rps=load.rps, p50=load.p50_ms, p99=load.p99_ms, errors=load.errors)
                print(f"  query round {round_ + 1}/{runs} {name}: {load.rps:,.0f} req/s"
                      f" p50 {load.p50_ms:.1f} ms p99 {load.p99_ms:.1f} ms errors {load.errors}",
                      flush=True)  # fmt: skip
    finally:
        peak_rss["chatlog query"] = query.stop()
        peak_rss["naive keyset"] = naive.stop()
    med = {name: {k: s.median(k) for k in s.values} for name, s in series.items()}
    ratios = {
        "first_page_rps_vs_naive": med["chatlog first page"]["rps"]
        / med["naive first page"]["rps"],
        "first_page_p99_vs_naive": med["chatlog first page"]["p99"]
        / med["naive first page"]["p99"],
        "deep_vs_first_page_rps": med["chatlog 10k deep"]["rps"] / med["chatlog first page"]["rps"],
        "deep_rps_vs_naive": med["chatlog 10k deep"]["rps"] / med["naive 10k deep"]["rps"],
    }
    return {
        "messages": messages,
        "medians": med,
        "ratios": ratios,
        "rss_mb": {k: v / 2**20 for k, v in peak_rss.items()},
    }
