"""No name or argument reaches another account's mail or a file outside the data directory.

Hostile IMAP mailbox names (``../``, ``INBOX/../../x``, absolute paths, NUL, modified UTF-7 that
decodes to ``../``, another account's address), POP3 arguments, SMTP addresses and CLI arguments
are thrown at a server holding two accounts. Whatever each is answered, the other account's
mail stays untouched and invisible, and no file appears outside the data directory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.helpers.servers import pobox

from pobox.imap import mutf7
from pobox.server import Running
from pobox.service.delivery import Envelope

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORD = "pw"
SECRET = b"Subject: bob's secret\r\n\r\nthe secret\r\n"

NAMES: list[bytes] = [
    b"../" + BOB.encode() + b"/INBOX",
    b"INBOX/../../x",
    b"../../../../etc/passwd",
    b"/etc/passwd",
    b"/tmp/pobox-isolation",
    b"~" + BOB.encode(),
    BOB.encode(),
    BOB.encode() + b"/INBOX",
    b"#shared/" + BOB.encode(),
    b"&AC4ALgAv-INBOX",  # modified UTF-7 for "../INBOX"
    b"&AC4ALgAvAC4ALgAv-etc",  # "../../etc"
    b"&AC8-etc&AC8-passwd",  # "/etc/passwd"
    b"INBOX/\x00/x",
    b"..",
    b".",
    b"Secret",
    b"%",
    b"*",
]


def quote(name: bytes) -> bytes:
    """A literal, so every byte (even NUL or quotes) reaches the server as given."""
    return b"{%d+}\r\n" % len(name) + name


class Imap:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.n = 0

    @classmethod
    async def login(cls, port: int, user: str) -> Imap:
        conn = cls(*await asyncio.open_connection("127.0.0.1", port))
        await conn.reader.readline()
        _, status = await conn.run(b"LOGIN %s %s" % (user.encode(), PASSWORD.encode()))
        assert status.startswith(b"OK"), status
        return conn

    async def run(self, command: bytes) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        self.writer.write(tag + b" " + command + b"\r\n")
        await self.writer.drain()
        untagged: list[bytes] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 30)
            assert line, "connection closed"
            if line.startswith(tag + b" "):
                return untagged, line[len(tag) + 1 :]
            untagged.append(line)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def files_outside(root: Path, data: Path) -> set[Path]:
    return {p for p in root.rglob("*") if data not in p.parents and p != data}


@pytest.fixture
async def two_accounts(running: Running) -> Running:
    service = running.service
    await service.accounts.add(ALICE, PASSWORD)
    await service.accounts.add(BOB, PASSWORD)
    bob = await service.accounts.require(BOB)
    await service.store.create_mailbox(bob.id, "Secret")
    (result,) = await service.delivery.deliver(Envelope("x@test", (BOB,)), SECRET)
    assert result.delivered
    return running


async def bob_state(running: Running) -> list[tuple[str, int]]:
    summaries = await running.service.mailbox_summaries(BOB)
    return sorted((s.mailbox.name, s.status.messages) for s in summaries)


async def only_alices(running: Running, untagged: list[bytes]) -> None:
    """Every name LIST showed is one of alice's own mailboxes."""
    alice = await running.service.accounts.require(ALICE)
    own = {m.name for m in await running.service.store.list_mailboxes(alice.id)}
    for line in untagged:
        if not line.startswith(b"* LIST"):
            continue
        shown = line.rstrip(b"\r\n").split(b' "/" ', 1)[1]
        if shown.startswith(b"{"):
            continue  # a literal name: alice's own (bob's names are plain)
        raw = shown.strip(b'"')
        try:
            text = mutf7.decode(raw)
        except ValueError:
            text = raw.decode("utf-8", "replace")
        assert text in own or raw.decode("utf-8", "replace") in own, (line, own)


async def test_imap_mailbox_names(two_accounts: Running, tmp_path: Path) -> None:
    running = two_accounts
    data = running.service.config.data_path.resolve()
    before_files = files_outside(tmp_path, data)
    before_bob = await bob_state(running)
    imap = await Imap.login(running.port("imap"), ALICE)
    message = b"Subject: from alice\r\n\r\nhello\r\n"
    for name in NAMES:
        q = quote(name)
        for command in (
            b"SELECT " + q,
            b"EXAMINE " + q,
            b"STATUS " + q + b" (MESSAGES)",
            b"CREATE " + q,
            b"APPEND " + q + b" {%d+}\r\n" % len(message) + message,
            b"SELECT " + q,
            b"RENAME " + q + b" " + quote(name + b"2"),
            b"RENAME INBOX " + q,
            b"DELETE " + q,
            b"DELETE " + quote(name + b"2"),
        ):
            untagged, status = await imap.run(command)
            assert status[:3] in (b"OK ", b"NO ", b"BAD"), (command, status)
            text = b"".join(untagged)
            assert b"secret" not in text.lower(), (command, text)
        for reference, pattern in ((b'""', q), (q, b'"*"'), (b'"/"', b'"*"'), (b'"../"', b'"*"')):
            untagged, status = await imap.run(b"LIST " + reference + b" " + pattern)
            assert status[:3] in (b"OK ", b"NO ", b"BAD"), status
            await only_alices(running, untagged)
    untagged, _ = await imap.run(b'LIST "" "*"')
    await only_alices(running, untagged)
    await imap.close()
    assert await bob_state(running) == before_bob
    assert files_outside(tmp_path, data) == before_files
    # bob's mail is whole and only bob sees it
    bob = await Imap.login(running.port("imap"), BOB)
    untagged, status = await bob.run(b"SELECT INBOX")
    assert status.startswith(b"OK")
    untagged, status = await bob.run(b"FETCH 1 BODY.PEEK[TEXT]")
    assert b"the secret" in b"".join(untagged)
    await bob.close()


async def test_pop3_arguments(two_accounts: Running) -> None:
    running = two_accounts
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port("pop3"))

    async def ask(line: bytes) -> bytes:
        writer.write(line + b"\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 30)

    await reader.readline()
    for user in (b"../" + BOB.encode(), BOB.encode() + b"\x00" + ALICE.encode()):
        assert (await ask(b"USER " + user)).startswith((b"+OK", b"-ERR"))
        assert (await ask(b"PASS " + PASSWORD.encode())).startswith(b"-ERR")
    writer.close()
    for argument in (b"1", b"0", b"-1", b"../1", b"99999999999999999999", b"1 2", b"\x001"):
        # a fresh session each time: too many invalid commands end a session
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port("pop3"))
        await reader.readline()
        assert (await ask(b"USER " + ALICE.encode())).startswith(b"+OK")
        assert (await ask(b"PASS " + PASSWORD.encode())).startswith(b"+OK maildrop has 0 messages")
        for verb in (b"RETR", b"TOP", b"LIST", b"UIDL", b"DELE"):
            answer = await ask(verb + b" " + argument + (b" 0" if verb == b"TOP" else b""))
            assert answer.startswith(b"-ERR"), (verb, argument, answer)
        assert (await ask(b"QUIT")).startswith(b"+OK")
        writer.close()
    assert [m for m in await bob_state(running) if m[0] == "INBOX"] == [("INBOX", 1)]


@pytest.mark.parametrize("listener", ["smtp", "lmtp"])
async def test_smtp_addresses(two_accounts: Running, tmp_path: Path, listener: str) -> None:
    running = two_accounts
    data = running.service.config.data_path.resolve()
    before_files = files_outside(tmp_path, data)
    before_bob = await bob_state(running)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port(listener))

    async def reply(line: bytes) -> bytes:
        writer.write(line + b"\r\n")
        await writer.drain()
        while True:
            got = await asyncio.wait_for(reader.readline(), 30)
            if got[3:4] != b"-":
                return got

    assert (await reader.readline()).startswith(b"220")
    assert (await reply(b"LHLO t" if listener == "lmtp" else b"EHLO t")).startswith(b"250")
    hostile = [
        b"../../etc/passwd",
        b"/etc/passwd@example.org",
        b"../bob@example.org",
        b"bob@example.org/../alice",
        b"alice@example.org\x00bob",
        b"bob@example.org/Secret",
        b"alice+../../bob@example.org",
        b'"bob@example.org"@example.org',
    ]
    for address in hostile:
        assert (await reply(b"MAIL FROM:<x@test>")).startswith(b"250")
        answer = await reply(b"RCPT TO:<" + address + b">")
        assert not answer.startswith(b"250"), (address, answer)
        await reply(b"RSET")
    writer.close()
    assert await bob_state(running) == before_bob
    assert files_outside(tmp_path, data) == before_files


async def test_cli_arguments(two_accounts: Running, tmp_path: Path) -> None:
    running = two_accounts
    data = running.service.config.data_path.resolve()
    before_files = files_outside(tmp_path, data)
    before_bob = await bob_state(running)
    for args in (
        ("deliver", "../" + BOB),
        ("deliver", "/etc/passwd"),
        ("deliver", BOB + "/../" + ALICE),
        ("mailbox", "list", "../../etc"),
        ("mailbox", "list", "/etc/passwd"),
        ("user", "add", "../evil@example.org", "--password-stdin"),
    ):
        result = await asyncio.to_thread(
            pobox, *args, data=data, stdin=b"Subject: x\r\n\r\nx\r\n", check=False
        )
        assert result.returncode != 0, (args, result.stdout)
    assert await bob_state(running) == before_bob
    assert files_outside(tmp_path, data) == before_files
