from __future__ import annotations

import os
from pathlib import Path

import pytest

from pobox.config import (
    Config,
    config_from_environment,
    load_config,
    parse_retention,
    resolve_workers,
)
from pobox.errors import ConfigError


def test_defaults_need_no_file() -> None:
    config = load_config(None)
    assert (config.imap.port, config.pop3.port, config.smtp.port, config.lmtp.port) == (
        1143,
        1110,
        2525,
        2424,
    )
    assert config.web.port == 8080
    assert config.imap.listen == "127.0.0.1"
    assert config.pop3.retention == "delete"


def test_file_values_override_defaults(tmp_path: Path) -> None:
    path = tmp_path / "pobox.toml"
    path.write_text('hostname = "mx.example"\n[imap]\nport = 143\n[pop3]\nretention = "keep"\n')
    config = load_config(path)
    assert config.hostname == "mx.example"
    assert config.imap.port == 143 and config.imap.max_line == 65536
    assert config.pop3.retention == "keep"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[imap]\nprot = 1\n", "unknown key 'imap.prot'"),
        ("colour = 1\n", "unknown key 'colour'"),
        ('[imap]\nport = "x"\n', "key 'imap.port' must be an integer"),
        ("[imap]\nport = 70000\n", "key 'imap.port' must be between 0 and 65535"),
        ('[pop3]\nretention = "forever"\n', "key 'pop3.retention'"),
        ("imap = 3\n", "key 'imap' must be a table"),
        ("[imap\n", "not valid TOML"),
        ('[server]\nlog_level = "loud"\n', "key 'server.log_level' must be one of"),
        ('[server]\nworkers = "many"\n', "key 'server.workers' must be an integer or \"auto\""),
        ("[server]\nworkers = 0\n", "key 'server.workers' must be between 1 and 256"),
        ('[server]\nevent_loop = "trio"\n', "key 'server.event_loop' must be one of"),
    ],
)
def test_bad_config_names_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_environment_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[smtp]\nport = 25\n")
    env = {"POBOX_CONFIG": str(path), "POBOX_DATA": "/srv/mail"}
    config = config_from_environment(None, None, env)
    assert config.smtp.port == 25 and config.data_dir == "/srv/mail"
    assert config_from_environment(None, "/other", env).data_dir == "/other"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("delete", ("delete", None)), ("keep", ("keep", None)), ("keep-days:30", ("keep-days", 30))],
)
def test_retention_values(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_retention(text) == expected


@pytest.mark.parametrize("text", ["keep-days:", "keep-days:0", "keep-days:x", "Keep", ""])
def test_bad_retention_values(text: str) -> None:
    with pytest.raises(ValueError, match="retention"):
        parse_retention(text)


def test_workers_default_to_one_per_core(tmp_path: Path) -> None:
    assert Config().server.workers == "auto"
    assert resolve_workers("auto") == len(os.sched_getaffinity(0))
    path = tmp_path / "w.toml"
    path.write_text("[server]\nworkers = 3\n")
    assert resolve_workers(load_config(path).server.workers) == 3
    assert resolve_workers("2") == 2  # --workers 2 on the command line
    with pytest.raises(ValueError, match="number or 'auto'"):
        resolve_workers("lots")


def test_trusted_networks_are_a_validated_list(tmp_path: Path) -> None:
    assert Config().auth.trusted_networks == ()
    path = tmp_path / "t.toml"
    path.write_text('[auth]\ntrusted_networks = ["127.0.0.1/8", "2001:db8::/32", "192.0.2.7"]\n')
    assert load_config(path).auth.trusted_networks == (
        "127.0.0.0/8",
        "2001:db8::/32",
        "192.0.2.7/32",
    )
    for text, message in (
        ('trusted_networks = "127.0.0.0/8"', "must be a list of strings"),
        ("trusted_networks = [1]", "must be a list of strings"),
        ('trusted_networks = ["10.0.0.0/33"]', "'10.0.0.0/33' is not an IP network"),
    ):
        path.write_text(f"[auth]\n{text}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert f"{path}: key 'auth.trusted_networks'" in str(info.value)
        assert message in str(info.value)


def test_server_user_and_log_settings(tmp_path: Path) -> None:
    server = Config().server
    assert (server.user, server.log_format, server.log_file) == ("", "text", "")
    path = tmp_path / "s.toml"
    path.write_text('[server]\nuser = "pobox"\nlog_format = "json"\nlog_file = "/var/log/p.log"\n')
    server = load_config(path).server
    assert (server.user, server.log_format, server.log_file) == ("pobox", "json", "/var/log/p.log")
    path.write_text('[server]\nlog_format = "xml"\n')
    with pytest.raises(ConfigError, match=r"'server\.log_format' must be one of text, json"):
        load_config(path)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    example = docs.split("## Example", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.toml"
    path.write_text(example)
    config = load_config(path)
    assert config.server.user == "pobox" and config.auth.trusted_networks == ("127.0.0.0/8",)
