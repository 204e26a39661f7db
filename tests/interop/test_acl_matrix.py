"""The isolation matrix of shared folders (RFC 4314 §4, §6), on both backends.

For every right and every command that needs it: an account that has every right on the owner's
folder except that one is refused (NO [NOPERM], or the READ-ONLY/NONEXISTENT answer the RFC
gives), and the same account with that right can do it. An account with no rights, or with
rights but not ``l``, gets for every command exactly the answer it gets for a folder that does
not exist, so it cannot learn that the folder is there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import make_config
from tests.helpers.postgres import session_database

from pobox.server import Running, start, stop
from pobox.service.acl import ALL_RIGHTS
from pobox.service.mail import MailService

pytestmark = pytest.mark.interop

OWNER = "owner@example.org"
GUEST = "guest@example.org"
PASSWORD = "secret"
TEAM = f"Shared/{OWNER}/Team"
MISSING = f"Shared/{OWNER}/Nowhere"
MESSAGE = b"From: owner@example.org\r\nSubject: hello\r\n\r\nhello\r\n"


@pytest.fixture(params=["sqlite", "postgres"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    config = make_config(tmp_path / "data")
    schema = None
    if request.param == "postgres":
        schema, dsn = session_database().new_schema()
        config = dataclasses.replace(config, store=dsn)
    service = await MailService.open(config)
    server = await start(config, service)
    try:
        yield server
    finally:
        await stop(server)
        if schema is not None:
            session_database().drop_schema(schema)


class Client:
    """A bare IMAP client: one command, its lines and its tagged answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.count = reader, writer, 0

    @classmethod
    async def login(cls, port: int, address: str) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await reader.readline()
        assert (await client.run(f"LOGIN {address} {PASSWORD}"))[-1].split()[1] == "OK"
        return client

    async def run(self, command: str, literal: bytes | None = None) -> list[str]:
        self.count += 1
        tag = f"t{self.count}"
        line = f"{tag} {command}"
        if literal is not None:
            line += f" {{{len(literal)}+}}"
        data = line.encode() + b"\r\n" + (literal + b"\r\n" if literal is not None else b"")
        self.writer.write(data)
        await self.writer.drain()
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), 30)
            assert raw, "the server closed the connection"
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if text.startswith(tag + " "):
                return lines

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def status(lines: list[str]) -> str:
    """'OK', 'NO [NOPERM]', 'BAD' … of the tagged line."""
    match = re.match(r"t\d+ (OK|NO|BAD)(?: \[([A-Z-]+))?", lines[-1])
    assert match is not None, lines
    if match.group(1) == "OK" or not match.group(2):
        return match.group(1)
    return f"{match.group(1)} [{match.group(2)}]"


async def setup(running: Running) -> None:
    service = running.service
    owner = await service.accounts.add(OWNER, PASSWORD)
    await service.accounts.add(GUEST, PASSWORD)
    client = await Client.login(running.port("imap"), OWNER)
    try:
        for name in ("Team", "Team/Child"):
            assert status(await client.run(f"CREATE {name}")) == "OK"
        for flags in ("()", "(\\Deleted)", "()", "()", "()"):
            assert status(await client.run(f"APPEND Team {flags}", MESSAGE)) == "OK"
    finally:
        await client.close()
    assert owner is not None


async def grant(running: Running, rights: str) -> None:
    client = await Client.login(running.port("imap"), OWNER)
    try:
        for name in ("Team", "Team/Child"):
            answer = await client.run(f'SETACL {name} {GUEST} "{rights}"')
            assert status(answer) == "OK", answer
    finally:
        await client.close()


#: (command, the right it needs, the answer without it). ``{m}`` is the shared folder.
#: Selected-state commands run after ``SELECT {m}``; "select" marks them.
MATRIX: list[tuple[str, str, str, bool | str]] = [
    ('SELECT "{m}"', "r", "NO [NOPERM]", False),
    ('EXAMINE "{m}"', "r", "NO [NOPERM]", False),
    ('STATUS "{m}" (MESSAGES)', "r", "NO [NOPERM]", False),
    ('APPEND "{m}"', "i", "NO [NOPERM]", False),
    ('CREATE "{m}/New"', "k", "NO [NOPERM]", False),
    ('DELETE "{m}/Child"', "x", "NO [NOPERM]", False),
    ('RENAME "{m}/Child" "{m}/Renamed"', "x", "NO [NOPERM]", False),
    ('GETACL "{m}"', "a", "NO [NOPERM]", False),
    ('SETACL "{m}" ' + OWNER + " r", "a", "NO [NOPERM]", False),
    ('DELETEACL "{m}" ' + GUEST, "a", "NO [NOPERM]", False),
    ('LISTRIGHTS "{m}" ' + GUEST, "a", "NO [NOPERM]", False),
    ("STORE 1 +FLAGS (\\Seen)", "s", "NO [NOPERM]", True),
    ("STORE 1 +FLAGS (\\Flagged)", "w", "NO [NOPERM]", True),
    ("STORE 1 +FLAGS ($Work)", "w", "NO [NOPERM]", True),
    ("STORE 1 +FLAGS (\\Deleted)", "t", "NO [NOPERM]", True),
    ("EXPUNGE", "e", "NO [NOPERM]", True),
    ("MOVE 1 INBOX", "e", "NO [NOPERM]", True),
    ("MOVE 1 INBOX", "t", "NO [NOPERM]", True),
    ("COPY 1 INBOX", "", "OK", True),  # copying out needs only r
    # into the shared folder from the guest's own INBOX: the i right
    ('COPY 1 "{m}"', "i", "NO [NOPERM]", "INBOX"),
    ('MOVE 1 "{m}"', "i", "NO [NOPERM]", "INBOX"),
]


def _command(template: str) -> tuple[str, bytes | None]:
    command = template.replace("{m}", TEAM)
    return command, (MESSAGE if command.startswith("APPEND") else None)


async def try_command(running: Running, template: str, selected: bool | str) -> str:
    """*selected*: True selects the shared folder first, a name selects that mailbox of the
    guest (given a message to work with)."""
    client = await Client.login(running.port("imap"), GUEST)
    try:
        if isinstance(selected, str):
            assert status(await client.run(f"APPEND {selected}", MESSAGE)) == "OK"
            assert status(await client.run(f"SELECT {selected}")) == "OK"
        elif selected:
            answer = await client.run(f'SELECT "{TEAM}"')
            assert status(answer) == "OK", answer
        command, literal = _command(template)
        return status(await client.run(command, literal))
    finally:
        await client.close()


async def test_each_right_is_needed_and_enough(running: Running) -> None:
    await setup(running)
    for template, right, refusal, selected in MATRIX:
        if not right:
            continue
        await grant(running, ALL_RIGHTS.replace(right, ""))
        answer = await try_command(running, template, selected)
        assert answer == refusal, (template, right, answer)
    # with every right, each command succeeds (in an order that keeps the folders there)
    for template, _right, _refusal, selected in MATRIX:
        if template.startswith(("SETACL", "DELETEACL", "DELETE", "RENAME")):
            continue
        await grant(running, ALL_RIGHTS)
        answer = await try_command(running, template, selected)
        assert answer == "OK", (template, answer)


async def test_without_lookup_the_folder_does_not_exist(running: Running) -> None:
    await setup(running)
    probes = [  # COPY and MOVE first: the SELECT of the folder ends INBOX's selection
        'COPY 1 "{m}"',
        'MOVE 1 "{m}"',
        'SELECT "{m}"',
        'EXAMINE "{m}"',
        'STATUS "{m}" (MESSAGES)',
        'CREATE "{m}/New"',
        'DELETE "{m}"',
        'RENAME "{m}" "Shared/' + OWNER + '/Other"',
        'GETACL "{m}"',
        'MYRIGHTS "{m}"',
        'LISTRIGHTS "{m}" ' + GUEST,
        'SETACL "{m}" ' + GUEST + " +a",
        'DELETEACL "{m}" ' + GUEST,
        'SUBSCRIBE "{m}"',
    ]

    async def answers(name: str) -> list[list[str]]:
        client = await Client.login(running.port("imap"), GUEST)
        try:
            assert status(await client.run("APPEND INBOX", MESSAGE)) == "OK"
            assert status(await client.run("SELECT INBOX")) == "OK"
            out = []
            for probe in probes:
                lines = await client.run(probe.replace("{m}", name))
                out.append([re.sub(r"^t\d+ ", "", line).replace(name, "<name>") for line in lines])
            out.append(await client.run(f'APPEND "{name}"', MESSAGE))
            out[-1] = [re.sub(r"^t\d+ ", "", line).replace(name, "<name>") for line in out[-1]]
            listed = await client.run('LIST "" "*"')
            assert not any("Team" in line for line in listed), listed
            listed = await client.run('LIST "" "Shared/*" RETURN (MYRIGHTS)')
            assert not any("Team" in line for line in listed), listed
            return out
        finally:
            await client.close()

    # no entry at all; then an entry with every right but l (RFC 4314 §6)
    for rights in ("", ALL_RIGHTS.replace("l", "")):
        if rights:
            await grant(running, rights)
        real = await answers(TEAM)
        missing = await answers(MISSING)
        assert real == missing
        assert [r[-1] for r in real if not r[-1].startswith(("NO", "OK"))] == []
