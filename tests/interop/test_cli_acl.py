"""`pobox acl set|del|list` as an administrator runs them (docs/sharing.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.servers import pobox

pytestmark = pytest.mark.interop

ANNA = "anna@example.org"
BEN = "ben@example.org"


def test_set_list_del(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for address in (ANNA, BEN):
        pobox("user", "add", address, "--password-stdin", data=data, stdin=b"pw\n")
    out = pobox("acl", "set", ANNA, "Sent", "Ben@Example.org", "lrs", data=data).stdout.decode()
    assert out.strip() == f"{BEN} has lrs on Sent of {ANNA}"
    out = pobox("acl", "set", ANNA, "Sent", "--", BEN, "-s", data=data).stdout.decode()
    assert out.strip() == f"{BEN} has lr on Sent of {ANNA}"
    listing = pobox("acl", "list", ANNA, data=data).stdout.decode().splitlines()
    assert listing[:3] == ["Sent", f"  {ANNA}  lrswipkxteacd  (owner)", f"  {BEN}  lr"]
    listing = pobox("acl", "list", BEN, data=data).stdout.decode().splitlines()
    assert listing == [
        f"{BEN} shares no folder",
        f"shared with {BEN}:",
        f"  Shared/{ANNA}/Sent  lr",
    ]
    pobox("acl", "del", ANNA, "Sent", BEN, data=data)
    listing = pobox("acl", "list", ANNA, "Sent", data=data).stdout.decode().splitlines()
    assert listing == ["Sent", f"  {ANNA}  lrswipkxteacd  (owner)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("set", ANNA, "Sent", "nobody@example.org", "lr"),
            "there is no account nobody@example.org",
        ),
        (("set", ANNA, "Nope", BEN, "lr"), "mailbox Nope does not exist"),
        (("set", ANNA, "Sent", BEN, "lrQ"), "'Q' is not a right this server supports"),
        (("set", ANNA, "Sent", "anyone", "lr"), "does not let owners grant rights to anyone"),
        (("set", ANNA, "Sent", ANNA, "lr"), "the owner's rights on their own mailbox"),
        (("list", "nobody@example.org"), "no account nobody@example.org"),
    ],
)
def test_errors_name_the_problem(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    data = tmp_path / "data"
    for address in (ANNA, BEN):
        pobox("user", "add", address, "--password-stdin", data=data, stdin=b"pw\n")
    result = pobox("acl", *args, data=data, check=False)
    assert result.returncode != 0
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
