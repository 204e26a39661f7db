"""`pobox metadata get|set` as an administrator runs them (docs/imap.md, METADATA)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.servers import pobox

pytestmark = pytest.mark.interop

ANNA = "anna@example.org"


def test_get_set_delete(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pobox("user", "add", ANNA, "--password-stdin", data=data, stdin=b"pw\n")
    out = pobox("metadata", "set", ANNA, "inbox", "/Shared/Comment", "Anna's inbox", data=data)
    assert out.stdout.decode().strip() == f"set /shared/comment of INBOX for {ANNA}"
    pobox("metadata", "set", ANNA, "INBOX", "/private/comment", "only mine", data=data)
    # the server's /shared entries are the administrator's (not [metadata] admins' only)
    out = pobox("metadata", "set", ANNA, "", "/shared/comment", "Maintenance Sunday", data=data)
    assert out.stdout.decode().strip() == f"set /shared/comment of the server for {ANNA}"
    listing = pobox("metadata", "get", ANNA, "INBOX", data=data).stdout.decode().splitlines()
    assert listing == ["/private/comment  only mine", "/shared/comment  Anna's inbox"]
    listing = pobox("metadata", "get", ANNA, "Drafts", data=data).stdout.decode().splitlines()
    assert listing == ["/private/specialuse  \\Drafts"]
    one = pobox("metadata", "get", ANNA, "", "/shared/comment", data=data).stdout.decode()
    assert one.splitlines() == ["/shared/comment  Maintenance Sunday"]
    pobox("metadata", "set", ANNA, "INBOX", "/private/comment", "--delete", data=data)
    listing = pobox("metadata", "get", ANNA, "INBOX", "/private/comment", data=data)
    assert listing.stdout.decode().splitlines() == ["no entries"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("set", ANNA, "INBOX", "/comment", "x"),
            "an entry name begins with /private/ or /shared/",
        ),
        (("set", ANNA, "INBOX", "/shared/comment"), "give either a VALUE or --delete"),
        (("set", ANNA, "INBOX", "/shared/comment", "x", "--delete"), "give either a VALUE"),
        (("set", ANNA, "Nope", "/shared/comment", "x"), "mailbox Nope does not exist"),
        (("get", "nobody@example.org", "INBOX"), "no account nobody@example.org"),
        (("set", ANNA, "Drafts", "/private/specialuse", "\\Flagged"), "no virtual mailboxes"),
    ],
)
def test_refusals_name_the_problem(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    data = tmp_path / "data"
    pobox("user", "add", ANNA, "--password-stdin", data=data, stdin=b"pw\n")
    result = pobox("metadata", *args, data=data, check=False)
    assert result.returncode == 1
    assert message in result.stderr.decode(), result.stderr
