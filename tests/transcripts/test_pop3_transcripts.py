"""POP3 transcripts: tests/transcripts/pop3/*.txt replayed against the in-process server.

A transcript reads like RFC 1939's examples. Lines:

    # comment                     (blank lines are ignored too)
    ! account ADDRESS PASSWORD [key=value ...]    create an account (and set account settings)
    ! deliver ADDRESS             deliver the message in the "| " lines that follow (CRLF-joined,
                                  each line ends with CRLF unless the block ends with "|\\")
    ! expunge N                   expunge delivered message N from its INBOX (as IMAP would)
    ! connect NAME                open a connection named NAME and make it current
    ! use NAME                    make connection NAME current
    ! drop                        close the current connection without QUIT
    ! closed                      the server must have closed the current connection
    ! inbox ADDRESS COUNT [SEEN]  the store's INBOX holds COUNT messages (SEEN of them \\Seen)
    C: text                       sent; consecutive C: lines are sent in one write (pipelining)
    S: text                       one line the server must send, matched exactly except for
                                  {*} (any text on that line)

Placeholders, in C: and S: lines: {size:1+2} is the stored size (sum of sizes) of delivered
messages 1 and 2 (numbered in delivery order across the transcript), {uidl:1} their UIDL in
Dovecot's form (hex UID, hex UIDVALIDITY), {b64:text} base64 of text with \\0 for NUL,
{X*300} the character X 300 times, {sp} a space (where a line ends in one). A connection
named "1" is opened by the first C:/S: line.
"""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.conftest import make_config

from pobox.config import Config
from pobox.server import Running
from pobox.service.delivery import Envelope
from pobox.store.api import SEEN

HERE = Path(__file__).parent / "pop3"
TRANSCRIPTS = sorted(HERE.glob("*.txt"))
TIMEOUT = 10.0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        pop3={"auth_failure_delay": 0.01, "max_auth_failures": 3},
        auth={"penalty_max": 0.01},
    )


@dataclass
class Delivered:
    address: str
    uid: int
    size: int
    uidl: str


@dataclass
class Conversation:
    running: Running
    name: str
    delivered: list[Delivered] = field(default_factory=list)
    connections: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(
        default_factory=dict
    )
    current: str = ""
    seen: list[str] = field(default_factory=list)  # the conversation so far, for failures

    def fail(self, lineno: int, message: str) -> None:
        context = "\n".join(self.seen[-15:])
        pytest.fail(f"{self.name}:{lineno}: {message}\n--- last lines ---\n{context}")

    def expand(self, text: str) -> str:
        def sizes(match: re.Match[str]) -> str:
            return str(sum(self.delivered[int(n) - 1].size for n in match.group(1).split("+")))

        text = re.sub(r"\{size:([\d+]+)\}", sizes, text)
        text = re.sub(r"\{uidl:(\d+)\}", lambda m: self.delivered[int(m.group(1)) - 1].uidl, text)
        text = re.sub(
            r"\{b64:([^}]*)\}",
            lambda m: base64.b64encode(m.group(1).replace("\\0", "\0").encode()).decode(),
            text,
        )
        text = re.sub(r"\{(.)\*(\d+)\}", lambda m: m.group(1) * int(m.group(2)), text)
        return text.replace("{sp}", " ")

    async def connect(self, name: str) -> None:
        port = self.running.port("pop3")
        self.connections[name] = await asyncio.open_connection("127.0.0.1", port)
        self.current = name

    async def ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.current:
            await self.connect("1")
        return self.connections[self.current]

    async def send(self, lines: list[str]) -> None:
        _, writer = await self.ensure()
        writer.write(b"".join(self.expand(line).encode() + b"\r\n" for line in lines))
        await writer.drain()
        self.seen.extend(f"[{self.current}] C: {line}" for line in lines)

    async def expect(self, lineno: int, pattern: str) -> None:
        reader, _ = await self.ensure()
        try:
            raw = await asyncio.wait_for(reader.readline(), TIMEOUT)
        except TimeoutError:
            self.fail(lineno, f"no reply; expected {pattern!r}")
        if not raw.endswith(b"\r\n"):
            self.fail(lineno, f"expected {pattern!r}, got {raw!r} (not a CRLF line)")
        got = raw[:-2].decode("utf-8", "replace")
        self.seen.append(f"[{self.current}] S: {got}")
        expected = self.expand(pattern)
        regex = ".*".join(re.escape(part) for part in expected.split("{*}"))
        if not re.fullmatch(regex, got, re.DOTALL):
            self.fail(lineno, f"expected {expected!r}\n      got      {got!r}")

    async def closed(self, lineno: int) -> None:
        reader, writer = await self.ensure()
        try:
            rest = await asyncio.wait_for(reader.read(), TIMEOUT)
        except TimeoutError:
            self.fail(lineno, "the server did not close the connection")
        if rest:
            self.fail(lineno, f"unexpected data before close: {rest[:200]!r}")
        writer.close()
        del self.connections[self.current]
        self.current = ""

    async def drop(self) -> None:
        _, writer = await self.ensure()
        writer.close()
        await writer.wait_closed()
        del self.connections[self.current]
        self.current = ""
        await asyncio.sleep(0.3)  # let the server notice the drop and release the lock

    async def close_all(self) -> None:
        for _, writer in self.connections.values():
            writer.close()
        for _, writer in self.connections.values():
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
        self.connections.clear()
        await asyncio.sleep(0.05)


async def _deliver(conv: Conversation, address: str, body: list[str], final_crlf: bool) -> None:
    service = conv.running.service
    content = "\r\n".join(body) + ("\r\n" if final_crlf else "")
    envelope = Envelope("sender@example.org", (address,), "client.example", "192.0.2.1")
    (result,) = await service.delivery.deliver(envelope, content.encode())
    assert result.delivered and result.uid is not None, result
    account = await service.accounts.require(address)
    inbox = await service.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    (meta,) = await service.store.get_messages(inbox.id, [result.uid])
    uidl = f"{meta.uid:08x}{inbox.uidvalidity:08x}"
    conv.delivered.append(Delivered(address, meta.uid, meta.size, uidl))


async def _directive(conv: Conversation, lineno: int, words: list[str], block: list[str]) -> None:
    service = conv.running.service
    match words:
        case ["account", address, password, *settings]:
            await service.accounts.add(address, conv.expand(password))
            for setting in settings:
                key, _, value = setting.partition("=")
                await service.accounts.set_setting(address, key, value)
        case ["deliver", address]:
            final_crlf = not (block and block[-1] == "\\")
            await _deliver(conv, address, block[:-1] if not final_crlf else block, final_crlf)
        case ["expunge", number]:
            item = conv.delivered[int(number) - 1]
            account = await service.accounts.require(item.address)
            inbox = await service.store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            await service.store.expunge(inbox.id, [item.uid])
        case ["connect", name]:
            await conv.connect(name)
        case ["use", name]:
            if name not in conv.connections:
                conv.fail(lineno, f"no connection {name}")
            conv.current = name
        case ["drop"]:
            await conv.drop()
        case ["closed"]:
            await conv.closed(lineno)
        case ["inbox", address, count, *seen]:
            # RETR's \Seen is committed while the message streams, so the client can read the
            # end of the message a moment before the flag is visible: allow that moment
            account = await service.accounts.require(address)
            inbox = await service.store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            for _attempt in range(40):
                messages = await service.store.list_messages(inbox.id)
                flagged = sum(1 for m in messages if SEEN in m.flags)
                if len(messages) == int(count) and (not seen or flagged == int(seen[0])):
                    break
                await asyncio.sleep(0.05)
            if len(messages) != int(count):
                conv.fail(lineno, f"INBOX has {len(messages)} messages, expected {count}")
            if seen and flagged != int(seen[0]):
                conv.fail(lineno, f"INBOX has {flagged} \\Seen messages, expected {seen[0]}")
        case _:
            conv.fail(lineno, f"unknown directive {' '.join(words)!r}")


async def replay(running: Running, path: Path) -> None:
    conv = Conversation(running, path.name)
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    try:
        while index < len(lines):
            lineno, line = index + 1, lines[index]
            index += 1
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("! "):
                block: list[str] = []
                while index < len(lines) and lines[index].startswith("|"):
                    block.append(
                        lines[index][2:] if lines[index].startswith("| ") else lines[index][1:]
                    )
                    index += 1
                await _directive(conv, lineno, line[2:].split(), block)
            elif line.startswith("C: ") or line == "C:":
                batch = [line[3:]]
                while index < len(lines) and (
                    lines[index].startswith("C: ") or lines[index] == "C:"
                ):
                    batch.append(lines[index][3:])
                    index += 1
                await conv.send(batch)
            elif line.startswith("S: ") or line == "S:":
                await conv.expect(lineno, line[3:])
            else:
                conv.fail(lineno, f"cannot read transcript line {line!r}")
    finally:
        await conv.close_all()


def test_transcripts_exist() -> None:
    assert len(TRANSCRIPTS) >= 10


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_transcript(running: Running, path: Path) -> None:
    await replay(running, path)
