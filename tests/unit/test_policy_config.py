"""The [policy] section (docs/configuration.md): defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pobox.config import PolicyConfig, load_config, parse_duration, parse_policy_rule
from pobox.errors import ConfigError
from pobox.service.folder_policy import server_rules


def test_defaults_expunge_trash_and_junk_after_30_days() -> None:
    config = load_config(None).policy
    assert config == PolicyConfig()
    assert server_rules(config) == {
        "\\Trash": {"expunge-after": "30d"},
        "\\Junk": {"expunge-after": "30d"},
    }


def test_a_section_with_rules(tmp_path: Path) -> None:
    path = tmp_path / "pobox.toml"
    path.write_text(
        "[policy]\n"
        'trash_expunge_after = "off"\n'
        'junk_expunge_after = "2w"\n'
        "rules = ['\\Sent archive-after=365d archive-by=year', 'Old Lists expunge-after=90d']\n"
        "batch = 100\n"
        "batch_pause = 0.5\n"
        "interval = 600\n"
    )
    config = load_config(path).policy
    assert (config.batch, config.batch_pause, config.interval) == (100, 0.5, 600.0)
    assert server_rules(config) == {
        "\\Trash": {"expunge-after": "off"},
        "\\Junk": {"expunge-after": "2w"},
        "\\Sent": {"archive-after": "365d", "archive-by": "year"},
        "Old Lists": {"expunge-after": "90d"},
    }


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('trash_expunge_after = "30 days"', "key 'policy.trash_expunge_after': '30 days' is not"),
        ("rules = ['INBOX']", "key 'policy.rules': 'INBOX' is not 'FOLDER KEY=VALUE...'"),
        ("rules = ['INBOX archive-by=week']", "use archive-by=year or archive-by=none"),
        ("rules = ['INBOX expire=1d']", "unknown policy setting 'expire'"),
        ("batch = 0", "key 'policy.batch' must be between 1 and 100000"),
        ("interval = 0.5", "key 'policy.interval' must be at least 1"),
        ("sweep = 1", "unknown key 'policy.sweep'"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "pobox.toml"
    path.write_text(f"[policy]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_durations() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("2W") == 14 * 86400
    assert parse_duration(" off ") is None
    for bad in ("30", "d", "0d", "-1d", "1.5d", "30m", "1234567d"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)
    assert parse_policy_rule("Lists/Old Stuff archive-after=1w") == (
        "Lists/Old Stuff",
        {"archive-after": "1w"},
    )
