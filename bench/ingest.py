"""Ingest: webhook requests/s and latency, chatlog against the raw limit and the naive fix."""

import asyncio
import uuid
from dataclasses import dataclass

import nats
from nats.js.api import StorageType, StreamConfig

from bench.harness import VENV_BIN, Series, Servers, start, wait_http, wrk
from chatlog.servers import free_port

SECRET = "bench-secret"


@dataclass(frozen=True)
class Target:
    name: str
    workers: int


TARGETS = [
    Target("chatlog", 1), Target("chatlog", 2),
    Target("starlette+publish", 1), Target("starlette+publish", 2),
    Target("fastapi+publish", 1),
    Target("naive-insert", 1), Target("naive-insert", 2),
]  # fmt: skip


async def _reference_stream(nats_url: str, subject: str) -> None:
    nc = await nats.connect(nats_url)
    await nc.jetstream().add_stream(
        StreamConfig(
            name=subject.replace(".", "_").upper(),
            subjects=[f"{subject}.>"],
            storage=StorageType.FILE,
            duplicate_window=120,
        )
    )
    await nc.close()


def _launch(target: Target, servers: Servers, port: int):
    token = uuid.uuid4().hex[:10]
    uvicorn = [str(VENV_BIN / "uvicorn"), "--port", str(port), "--workers", str(target.workers),
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
    if target.name == "chatlog":
        env = {
            "CHATLOG_NATS_URL": servers.nats_url,
            "CHATLOG_STREAM": f"BENCH_{token}",
            "CHATLOG_SUBJECT_PREFIX": f"bench.{token}",
            "CHATLOG_TELEGRAM_SECRETS": f'{{"bench": "{SECRET}"}}',
            "CHATLOG_LOG_LEVEL": "warning",
        }
        args = [str(VENV_BIN / "chatlog"), "ingest", "--port", str(port),
                "--workers", str(target.workers)]  # fmt: skip
        return start(args, env, target.name), "/readyz"
    if target.name == "naive-insert":
        env = {"BENCH_DATABASE_URL": servers.database_url}
        return start([*uvicorn, "bench.references.naive_insert:app"], env, target.name), "/"
    subject = f"benchref.r{token}"
    asyncio.run(_reference_stream(servers.nats_url, subject))
    env = {"BENCH_NATS_URL": servers.nats_url, "BENCH_SUBJECT": subject}
    module = "publish_starlette" if target.name.startswith("starlette") else "publish_fastapi"
    return start([*uvicorn, f"bench.references.{module}:app"], env, target.name), "/"


def run(servers: Servers, *, runs: int, seconds: float) -> dict[str, object]:
    """Measure every target `runs` times, interleaved, and return medians and ratios.

    Every target is started once, all of them before the first measurement (an idle one costs
    nothing), warmed up for a second, then measured in `runs` rounds, each round in another order
    (each target first as often as the others); the peak RSS is over all rounds.
    """
    series = {target: Series() for target in TARGETS}
    running = {}
    peak_rss: dict[str, float] = {}
    try:
        for target in TARGETS:
            port = free_port()
            running[target] = (port, *_launch(target, servers, port))
        for port, process, ready in running.values():
            wait_http(f"http://127.0.0.1:{port}{ready}", process)
            wrk(f"http://127.0.0.1:{port}/telegram/bench/webhook", 1)  # warm-up
        for round_ in range(runs):
            shift = round_ * len(TARGETS) // runs
            for target in TARGETS[shift:] + TARGETS[:shift]:
                port = running[target][0]
                load = wrk(f"http://127.0.0.1:{port}/telegram/bench/webhook", seconds)
                series[target].add(rps=load.rps, p50=load.p50_ms, p99=load.p99_ms,
                                   errors=load.errors)  # fmt: skip
                print(f"  ingest round {round_ + 1}/{runs} {target.name} x{target.workers}: "
                      f"{load.rps:,.0f} req/s p50 {load.p50_ms:.1f} ms p99 {load.p99_ms:.1f} ms"
                      f" errors {load.errors}", flush=True)  # fmt: skip
    finally:
        for target, (_, process, _) in running.items():
            peak_rss[f"{target.name} x{target.workers}"] = process.stop() / 2**20
    med = {f"{t.name} x{t.workers}": {k: series[t].median(k) for k in series[t].values}
           for t in TARGETS}  # fmt: skip

    def best(name: str) -> dict[str, float]:
        return max((v for k, v in med.items() if k.startswith(name + " ")), key=lambda v: v["rps"])

    ratios = {
        "chatlog_best_vs_naive_best": best("chatlog")["rps"] / best("naive-insert")["rps"],
        "chatlog_vs_starlette_x1": med["chatlog x1"]["rps"] / med["starlette+publish x1"]["rps"],
        "chatlog_vs_starlette_x2": med["chatlog x2"]["rps"] / med["starlette+publish x2"]["rps"],
        "chatlog_p99_vs_starlette_p99_x1": med["chatlog x1"]["p99"]
        / med["starlette+publish x1"]["p99"],
    }
    return {"medians": med, "ratios": ratios, "rss_mb": peak_rss}
