"""``[metrics] listen``: off by default, HOST:PORT when set, a clear error for anything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pobox.config import load_config, parse_listen
from pobox.errors import ConfigError


def test_metrics_are_off_by_default() -> None:
    assert load_config(None).metrics.listen == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9154", ("127.0.0.1", 9154)),
        ("[::1]:9154", ("::1", 9154)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("metrics.example.org:65535", ("metrics.example.org", 65535)),
    ],
)
def test_good_listen_values(tmp_path: Path, value: str, expected: tuple[str, int]) -> None:
    config = load_config(_write(tmp_path, f'"{value}"'))
    assert config.metrics.listen == value
    assert parse_listen(value) == expected


def _write(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "pobox.toml"
    path.write_text(f"[metrics]\nlisten = {value}\n")
    return path


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"9154"', "is not HOST:PORT"),
        ('"localhost"', "is not HOST:PORT"),
        ('"127.0.0.1:"', "is not HOST:PORT"),
        ('":9154"', "is not HOST:PORT"),
        ('"127.0.0.1:0"', "the port must be a number from 1 to 65535"),
        ('"127.0.0.1:70000"', "the port must be a number from 1 to 65535"),
        ('"127.0.0.1:http"', "the port must be a number from 1 to 65535"),
        ('"::1:9154"', "put an IPv6 address in brackets"),
        ('"[]:9154"', "does not name a host"),
        ('"my host:9154"', "does not name a host"),
        ("9154", "must be a string, not 9154"),
    ],
)
def test_bad_listen_values_are_named(tmp_path: Path, value: str, message: str) -> None:
    path = _write(tmp_path, value)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert "'metrics.listen'" in str(error.value)
    assert message in str(error.value)


def test_unknown_metrics_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pobox.toml"
    path.write_text("[metrics]\nport = 9154\n")
    with pytest.raises(ConfigError, match=r"unknown key 'metrics\.port'"):
        load_config(path)


ROOT = Path(__file__).resolve().parents[2]


def _defined() -> set[str]:
    """The metric families pobox.metrics defines (the names given to prometheus-client)."""
    source = (ROOT / "src/pobox/metrics.py").read_text()
    return set(re.findall(r'^\s+"(pobox_[a-z_]+)",$', source, re.MULTILINE))


@pytest.mark.parametrize("path", ["contrib/grafana-pobox.json", "docs/deployment.md"])
def test_dashboard_and_docs_name_only_exported_metrics(path: str) -> None:
    defined = _defined()
    assert "pobox_commands" in defined and len(defined) >= 10
    used = set(re.findall(r"pobox_[a-z_]+", (ROOT / path).read_text()))
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
    assert families <= defined
    if path.endswith(".md"):  # the Monitoring table lists every metric
        assert families >= defined
