"""`pobox user login add|list|del` as an administrator uses it (docs/app-passwords.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.helpers.servers import imap_login, pobox, server_process

OWNER = "alice@example.org"
_PASSWORD = re.compile(r"\b[a-z0-9]{4}(?:-[a-z0-9]{4}){3}\b")


def test_add_list_del(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("user", "add", OWNER, "--password-stdin", data=data, stdin=b"main\n")
    assert (
        "has no app passwords" in pobox("user", "login", "list", OWNER, data=data).stdout.decode()
    )

    made = pobox("user", "login", "add", OWNER, "--label", "Anna's phone", data=data)
    text = made.stdout.decode()
    passwords = _PASSWORD.findall(text)
    assert len(passwords) == 1, text  # printed once
    assert "pobox user login del alice@example.org 'Anna'\"'\"'s phone'" in text  # a shell line
    pobox("user", "login", "add", OWNER, "--label", "laptop", data=data)

    listing = pobox("user", "login", "list", OWNER, data=data).stdout.decode().splitlines()
    assert listing[0].split() == ["LABEL", "CREATED", "LAST", "USED", "LAST", "ADDRESS"]
    assert [line.split("  ")[0] for line in listing[1:]] == ["Anna's phone", "laptop"]
    assert all("never" in line and line.endswith("-") for line in listing[1:])
    assert passwords[0] not in "\n".join(listing)  # never shown again
    as_json = json.loads(pobox("user", "login", "list", OWNER, "--json", data=data).stdout)
    assert [(x["label"], x["last_used"], x["last_address"]) for x in as_json] == [
        ("Anna's phone", None, None),
        ("laptop", None, None),
    ]

    gone = pobox("user", "login", "del", OWNER, "Anna's phone", data=data).stdout.decode()
    assert gone == 'revoked the app password "Anna\'s phone" of alice@example.org\n'
    listing = pobox("user", "login", "list", OWNER, data=data).stdout.decode()
    assert "Anna" not in listing and "laptop" in listing


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("add", "ghost@example.org", "--label", "x"), b"no account ghost@example.org"),
        (("list", "ghost@example.org"), b"no account ghost@example.org"),
        (("del", "ghost@example.org", "x"), b"no account ghost@example.org"),
        (("add", "not an address", "--label", "x"), b"not a valid mail address"),
        (("add", OWNER, "--label", "laptop"), b"already has an app password labelled 'laptop'"),
        (("add", OWNER, "--label", "  "), b"the label must not be empty"),
        (("del", OWNER, "phone"), b"has no app password labelled 'phone'"),
        (("add", OWNER), b"the following arguments are required: --label"),
    ],
)
def test_errors_name_the_problem(tmp_path: Path, args: tuple[str, ...], expected: bytes) -> None:
    data = tmp_path / "data"
    pobox("user", "add", OWNER, "--password-stdin", data=data, stdin=b"main\n")
    pobox("user", "login", "add", OWNER, "--label", "laptop", data=data)
    result = pobox("user", "login", *args, data=data, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.interop
def test_list_shows_the_last_use(tmp_path: Path) -> None:
    with server_process(tmp_path, {OWNER: "main"}) as server:
        made = server.cli("user", "login", "add", OWNER, "--label", "phone").stdout.decode()
        password = _PASSWORD.findall(made)[0]
        assert imap_login(server.ports["imap"], OWNER, password) == "OK"
        assert imap_login(server.ports["imap"], OWNER, "main") == "OK"
        (line,) = server.cli("user", "login", "list", OWNER).stdout.decode().splitlines()[1:]
        assert "never" not in line and line.endswith("127.0.0.1")
