"""The README tells the truth: its configuration table is the settings the code reads."""

import re
from pathlib import Path

from chatlog.config import DevSettings
from ingest_service.config import IngestSettings
from query_service.config import QuerySettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def documented() -> set[str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(CHATLOG_[A-Z_]+)` \|", section, re.MULTILINE))


def test_configuration_table_matches_the_settings() -> None:
    read = {
        f"CHATLOG_{name.upper()}"
        for cls in (IngestSettings, QuerySettings, DevSettings)
        for name in cls.model_fields
    }
    assert documented() == read


def test_quickstart_commands() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quickstart
    assert "make test" in quickstart
