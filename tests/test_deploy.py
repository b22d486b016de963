"""The compose file and deploy/ match the code: commands, settings and ports (no Docker here)."""

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from chatlog.cli import app
from ingest_service.config import IngestSettings
from query_service.config import QuerySettings
from shared.config import ChatlogSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
CHATLOG_SERVICES = {
    name: service for name, service in COMPOSE["services"].items() if "build" in service
}


def setting_names(*classes: type[ChatlogSettings]) -> set[str]:
    return {f"CHATLOG_{field.upper()}" for cls in classes for field in cls.model_fields}


SETTINGS = setting_names(IngestSettings, QuerySettings)


def test_every_chatlog_process_is_in_compose() -> None:
    commands = sorted(service["command"][0] for service in CHATLOG_SERVICES.values())
    assert commands == ["ingest", "migrate", "project", "query"]


@pytest.mark.parametrize("name", sorted(CHATLOG_SERVICES))
def test_command_is_a_real_subcommand(name: str) -> None:
    subcommands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert CHATLOG_SERVICES[name]["command"][0] in subcommands


@pytest.mark.parametrize("name", sorted(CHATLOG_SERVICES))
def test_environment_is_read_by_the_code(name: str) -> None:
    environment = CHATLOG_SERVICES[name].get("environment", {})
    unknown = set(environment) - SETTINGS
    assert not unknown, f"{name} sets variables no settings class reads: {unknown}"


@pytest.mark.parametrize(("name", "setting"), [("ingest", "CHATLOG_INGEST_PORT"),
                                               ("query", "CHATLOG_QUERY_PORT")])  # fmt: skip
def test_ports_match(name: str, setting: str) -> None:
    service = CHATLOG_SERVICES[name]
    port = service["environment"][setting]
    assert service["ports"] == [f"{port}:{port}"]
    health = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in health
    host_setting = setting.replace("_PORT", "_HOST")
    assert service["environment"][host_setting] == "0.0.0.0"  # noqa: S104 - inside a container


def test_services_reach_the_servers_by_their_compose_names() -> None:
    for name, service in CHATLOG_SERVICES.items():
        environment = service.get("environment", {})
        if "CHATLOG_NATS_URL" in environment:
            assert environment["CHATLOG_NATS_URL"] == "nats://nats:4222", name
        if "CHATLOG_DATABASE_URL" in environment:
            assert "@postgres:5432/" in environment["CHATLOG_DATABASE_URL"], name


def test_nats_config_is_mounted_and_durable() -> None:
    nats = COMPOSE["services"]["nats"]
    mount = next(v for v in nats["volumes"] if v.startswith("./deploy/"))
    source, target, _ = mount.split(":")
    assert nats["command"] == ["-c", target]
    config = (ROOT / source).read_text(encoding="utf-8")
    assert re.search(r"^\s*sync_interval:\s*always\b", config, re.MULTILINE)
    assert "store_dir: /data/jetstream" in config


def test_cluster_configs_route_to_each_other() -> None:
    configs = sorted((ROOT / "deploy/nats/cluster").glob("nats-*.conf"))
    assert len(configs) == 3
    for config in configs:
        text = config.read_text(encoding="utf-8")
        for peer in ("nats-1", "nats-2", "nats-3"):
            assert f"nats-route://{peer}:6222" in text


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "deploy/Dockerfile").read_text(encoding="utf-8")
    for package in ("chatlog", "shared", "ingest_service", "query_service"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["chatlog"]' in dockerfile
