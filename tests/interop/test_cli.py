"""The `pobox` command as an administrator uses it: clear messages, never a traceback."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.servers import pobox


def test_user_lifecycle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert (
        b"created alice@example.org"
        in pobox(
            "user", "add", "alice@example.org", "--password-stdin", data=data, stdin=b"s3cret\n"
        ).stdout
    )
    again = pobox(
        "user", "add", "alice@example.org", "--password-stdin", data=data, stdin=b"x\n", check=False
    )
    assert again.returncode == 1 and b"already exists" in again.stderr
    pobox("alias", "add", "al@example.org", "alice@example.org", data=data)
    listing = pobox("user", "list", data=data).stdout.decode()
    assert "alice@example.org" in listing and "al@example.org" in listing
    pobox("user", "passwd", "alice@example.org", "--password-stdin", data=data, stdin=b"new\n")
    pobox("user", "set", "alice@example.org", "pop3.retention=keep-days:30", data=data)
    assert "pop3.retention=keep-days:30" in pobox("user", "list", data=data).stdout.decode()
    boxes = pobox("mailbox", "list", "alice@example.org", data=data).stdout.decode().splitlines()
    assert boxes[0].split() == ["MAILBOX", "MESSAGES", "UNSEEN", "SIZE"]
    assert [line.split()[0] for line in boxes[1:]] == [
        "INBOX",
        "Archive",
        "Drafts",
        "Junk",
        "Sent",
        "Trash",
    ]
    pobox("user", "del", "alice@example.org", data=data)
    assert b"alice" not in pobox("user", "list", data=data).stdout


def test_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cases = [
        (
            ("user", "add", "not-an-address", "--password-stdin"),
            b"pw\n",
            b"not a valid mail address",
        ),
        (("user", "add", "a@example.org"), b"", b"--password-stdin"),
        (("user", "del", "ghost@example.org"), None, b"no account"),
        (("mailbox", "list", "ghost@example.org"), None, b"no account"),
        (("user", "set", "ghost@example.org", "colour=blue"), None, b"unknown account setting"),
        (("pop3", "undelete", "ghost@example.org", "--since", "yesterday"), None, b"no account"),
    ]
    for args, stdin, expected in cases:
        result = pobox(*args, data=data, stdin=stdin, check=False)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
        assert b"Traceback" not in result.stderr


def test_bad_config_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[imap]\nprot = 1\n")
    result = pobox("user", "list", data=tmp_path / "d", config=bad, check=False)
    assert result.returncode == 64
    assert f"{bad}: unknown key 'imap.prot'".encode() in result.stderr


def test_init_demo_creates_the_demo_account_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = pobox("init", "--demo", data=data).stdout
    assert b"created the account demo@localhost" in first
    second = pobox("init", "--demo", data=data).stdout
    assert b"no demo account created" in second
