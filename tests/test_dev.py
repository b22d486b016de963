"""`chatlog dev` as a new user runs it: start, write, read back, Ctrl-C, start again, read again."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from chatlog.servers import free_port
from tests.conftest import postgres_folder

CHATLOG = str(Path(sys.executable).parent / "chatlog")
UPDATE = {
    "update_id": 424242,
    "message": {
        "message_id": 7,
        "date": 1764750000,
        "chat": {"id": 31337, "type": "private", "first_name": "Grace"},
        "from": {"id": 31337, "is_bot": False, "first_name": "Grace"},
        "text": "persist me ✨",
    },
}

pytestmark = pytest.mark.timeout(240)


def start_dev(folder: Path, ingest_port: int, query_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"CHATLOG_NATS_URL", "CHATLOG_DATABASE_URL", "CHATLOG_API_KEYS",
                        "CHATLOG_TELEGRAM_SECRETS"}}  # fmt: skip
    env |= {"CHATLOG_INGEST_PORT": str(ingest_port), "CHATLOG_QUERY_PORT": str(query_port)}
    return subprocess.Popen([CHATLOG, "dev"], cwd=folder, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for_banner(process: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        lines.append(line)
        if "Stop with Ctrl-C." in line:
            return lines
        assert time.monotonic() < deadline, "".join(lines)
    pytest.fail("chatlog dev exited:\n" + "".join(lines))


def stop(process: subprocess.Popen[str], folder: Path) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    leftovers = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if str(folder) in cmdline:
            leftovers.append(cmdline)
    assert not leftovers, leftovers


def test_dev_runs_everything_and_keeps_data() -> None:
    with postgres_folder() as folder:  # dev's embedded PostgreSQL lives under the folder
        run_dev_twice(folder)


def run_dev_twice(tmp_path: Path) -> None:
    ingest_port, query_port = free_port(), free_port()
    ingest, query = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{query_port}"
    process = start_dev(tmp_path, ingest_port, query_port)
    try:
        banner = "".join(wait_for_banner(process))
        secrets = json.loads((tmp_path / ".chatlog/dev-secrets.json").read_text())
        assert secrets["api_key"] in banner
        assert secrets["webhook_secret"] in banner
        hook_headers = {"X-Telegram-Bot-Api-Secret-Token": secrets["webhook_secret"]}
        written = httpx.post(f"{ingest}/telegram/devbot/webhook", json=UPDATE, headers=hook_headers)
        assert written.status_code == 200, written.text
        seq = written.json()["seq"]
        auth = {"Authorization": f"Bearer {secrets['api_key']}"}
        read = httpx.get(f"{query}/v1/bots/devbot/chats/31337/messages",
                         params={"min_seq": seq, "wait": 10}, headers=auth, timeout=15)  # fmt: skip
        assert read.status_code == 200, read.text
        assert [m["text"] for m in read.json()["items"]] == ["persist me ✨"]
    finally:
        stop(process, tmp_path)

    process = start_dev(tmp_path, ingest_port, query_port)
    try:
        wait_for_banner(process)
        read = httpx.get(f"{query}/v1/bots/devbot/chats/31337/messages", headers=auth, timeout=15)
        assert read.status_code == 200, read.text
        assert [m["text"] for m in read.json()["items"]] == ["persist me ✨"]
        assert int(read.headers["x-chatlog-seq"]) >= seq
    finally:
        stop(process, tmp_path)
