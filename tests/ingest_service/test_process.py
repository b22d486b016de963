"""`chatlog ingest` as a real process on a real port: the CLI wiring, end to end."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chatlog.servers import free_port
from shared.config import ChatlogSettings
from tests.conftest import FIXTURES

CHATLOG = str(Path(sys.executable).parent / "chatlog")


def test_help_lists_ingest() -> None:
    out = subprocess.run([CHATLOG, "--help"], capture_output=True, text=True, check=True).stdout
    assert "ingest" in out
    out = subprocess.run([CHATLOG, "ingest", "--help"], capture_output=True, text=True, check=True)
    assert "--port" in out.stdout


@pytest.mark.usefixtures("js")
def test_ingest_process_serves_webhooks(settings: ChatlogSettings, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CHATLOG_NATS_URL": settings.nats_url,
        "CHATLOG_STREAM": settings.stream,
        "CHATLOG_SUBJECT_PREFIX": settings.subject_prefix,
        "CHATLOG_TELEGRAM_SECRETS": '{"mybot": "hush"}',
        "CHATLOG_INGEST_PORT": str(port),
    }
    process = subprocess.Popen([CHATLOG, "ingest"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        body = (FIXTURES / "updates/message_private_text.json").read_bytes()
        response = httpx.post(f"{url}/telegram/mybot/webhook", content=body,
                              headers={"X-Telegram-Bot-Api-Secret-Token": "hush"})  # fmt: skip
        assert response.status_code == 200
        assert response.json()["seq"] == 1
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
