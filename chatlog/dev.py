"""`chatlog dev`: the whole system on one machine, from nothing but this repository.

Embedded NATS and PostgreSQL servers (unless `CHATLOG_NATS_URL` / `CHATLOG_DATABASE_URL` name real
ones), the migrations, then ingest, query API and projector as separate processes with one log.
Data lives under `CHATLOG_DATA_DIR` (`./.chatlog`) and survives a restart.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Final

import asyncpg
import httpx

from chatlog.servers import NatsServer, PostgresServer

DEV_BOT: Final = "devbot"
"""The bot id `chatlog dev` configures a webhook secret for."""
_DATABASE: Final = "chatlog"


@dataclass(frozen=True)
class DevSecrets:
    """The API key and webhook secret of a development data folder, kept across restarts."""

    api_key: str
    webhook_secret: str

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "DevSecrets":
        """Read the folder's secrets, making them on first use."""
        path = data_dir / "dev-secrets.json"
        if path.exists():
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        made = cls(api_key=secrets.token_urlsafe(24), webhook_secret=secrets.token_urlsafe(24))
        path.write_text(json.dumps(made.__dict__), encoding="utf-8")
        path.chmod(0o600)
        return made


class Supervisor:
    """Runs child processes, prefixes their output with their name, stops them together."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        """Print one line of the common log."""
        with self._lock:
            sys.stdout.write(f"{name:>8} | {line}\n")
            sys.stdout.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode(errors="replace").rstrip())

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `chatlog <args>` as a child named `name`."""
        process = subprocess.Popen(  # noqa: S603 - our own command
            [_chatlog(), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        assert process.stdout is not None  # noqa: S101 - PIPE above
        threading.Thread(target=self._pump, args=(name, process.stdout), daemon=True).start()
        self.children[name] = process
        return process

    def run(self, name: str, *args: str) -> int:
        """Run `chatlog <args>` to completion."""
        code = self.start(name, *args).wait()
        del self.children[name]
        return code

    def first_exit(self) -> tuple[str, int] | None:
        """A child that has exited, if any."""
        for name, process in self.children.items():
            code = process.poll()
            if code is not None:
                return name, code
        return None

    def stop_all(self) -> None:
        """SIGTERM every child, then SIGKILL what is still running after 10 s."""
        for process in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.children.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _chatlog() -> str:
    beside = Path(sys.executable).parent / "chatlog"
    return str(beside) if beside.exists() else "chatlog"


async def _ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _wait_ready(urls: list[str], supervisor: Supervisor, timeout: float = 60) -> bool:
    """Wait until every URL answers 200, or a child dies, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    waiting = list(urls)
    while waiting:
        exited = supervisor.first_exit()
        if exited is not None or time.monotonic() > deadline:
            supervisor.say("dev", f"not ready: {exited or waiting}; stopping")
            return False
        try:
            if httpx.get(waiting[0], timeout=1).status_code == httpx.codes.OK:
                waiting.pop(0)
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return True


def _banner(ingest: str, query: str, found: DevSecrets, embedded: str) -> str:
    sample = json.dumps({
        "update_id": int(time.time()),
        "message": {"message_id": int(time.time()), "date": int(time.time()),
                    "chat": {"id": 1001, "type": "private", "first_name": "Ada"},
                    "from": {"id": 1001, "is_bot": False, "first_name": "Ada"},
                    "text": "Hello from chatlog dev!"},
    })  # fmt: skip
    return f"""
chatlog dev is running ({embedded}).
  ingest:  {ingest}      query: {query}
  API key: {found.api_key}
  webhook: {ingest}/telegram/{DEV_BOT}/webhook  secret: {found.webhook_secret}
  (dev keeps nats-server's default fsync interval: fast, not crash-proof; see README)

Post a sample update, then read it back (min_seq: the read waits until the projector has it):
  SEQ=$(curl -s {ingest}/telegram/{DEV_BOT}/webhook -H 'X-Telegram-Bot-Api-Secret-Token: {found.webhook_secret}' -H 'Content-Type: application/json' -d '{sample}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])'); echo "stored at seq $SEQ"
  curl -s "{query}/v1/bots/{DEV_BOT}/chats/1001/messages?min_seq=$SEQ" -H 'Authorization: Bearer {found.api_key}'
Fill it with a sample history:  chatlog demo
Stop with Ctrl-C.
"""  # noqa: E501


def run_dev(data_dir: Path, ingest_port: int, query_port: int) -> int:
    """Run everything until Ctrl-C; returns the exit code."""
    import asyncio  # noqa: PLC0415

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    found = DevSecrets.load_or_create(data_dir)
    env = dict(os.environ)
    servers: list[NatsServer | PostgresServer] = []
    embedded = []
    stop_requested = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor = Supervisor(env)
    try:
        if not env.get("CHATLOG_NATS_URL"):
            nats_server = NatsServer(data_dir / "nats").start()
            servers.append(nats_server)
            env["CHATLOG_NATS_URL"] = nats_server.url
            embedded.append(f"embedded NATS at {nats_server.url}")
        if not env.get("CHATLOG_DATABASE_URL"):
            pg = PostgresServer(data_dir / "postgres").start()
            servers.append(pg)
            asyncio.run(_ensure_database(pg.url, _DATABASE))
            env["CHATLOG_DATABASE_URL"] = pg.url.rsplit("/", 1)[0] + f"/{_DATABASE}"
            embedded.append(f"embedded PostgreSQL at 127.0.0.1:{pg.port}")
        env.setdefault("CHATLOG_API_KEYS", json.dumps([found.api_key]))
        env.setdefault("CHATLOG_TELEGRAM_SECRETS", json.dumps({DEV_BOT: found.webhook_secret}))
        env["CHATLOG_INGEST_PORT"] = str(ingest_port)
        env["CHATLOG_QUERY_PORT"] = str(query_port)
        if supervisor.run("migrate", "migrate") != 0:
            supervisor.say("dev", "migrations failed; stopping")
            return 1
        supervisor.start("ingest", "ingest")
        supervisor.start("query", "query")
        supervisor.start("project", "project")
        ingest_url, query_url = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{query_port}"
        if not _wait_ready([f"{ingest_url}/readyz", f"{query_url}/readyz"], supervisor):
            return 1
        banner = _banner(ingest_url, query_url, found, ", ".join(embedded) or "your servers")
        for line in banner.strip("\n").splitlines():
            supervisor.say("dev", line)
        while not stop_requested.wait(0.2):
            exited = supervisor.first_exit()
            if exited is not None:
                supervisor.say("dev", f"{exited[0]} exited with {exited[1]}; stopping everything")
                return 1
        supervisor.say("dev", "stopping")
        return 0
    finally:
        supervisor.stop_all()
        for server in reversed(servers):
            server.stop()
