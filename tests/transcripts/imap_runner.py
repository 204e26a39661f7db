r"""IMAP transcripts: parse a conversation file and replay it over TCP against a running server.

A transcript reads like an RFC example (research/aesthetics.md §3.4)::

    # RFC 9051 §6.3.4 — CREATE makes missing parents          <- comments: "#" lines, blank lines
    fixture: account joe@example.org secret                    <- header: before the first C:/S:
    fixture: mailbox joe@example.org "Lists/Work" \Drafts
    state: authenticated joe@example.org secret

    C: a1 CREATE Lists/Play/
    S: a1 OK ...
    C: a2 LIST "" "Lists/*"
    [any order]
    S: * LIST (\HasChildren) "/" Lists
    S: * LIST (\HasNoChildren \Drafts) "/" Lists/Work
    [end]
    S: a2 OK LIST completed

Header lines (words are split like a shell does, but backslashes are kept: ``\Seen``):

``fixture: account ADDRESS PASSWORD``
    create an account (it gets INBOX, Drafts, Sent, Trash, Junk, Archive, all subscribed).
``fixture: mailbox ADDRESS NAME [\Use]``
    create a mailbox (and its missing parents) through pobox.service.mailboxes.
``fixture: subscribe ADDRESS NAME`` / ``fixture: unsubscribe ADDRESS NAME``
    change a subscription (the name need not exist).
``fixture: message ADDRESS MAILBOX [FLAG ...] [date=ISO-8601] [< FILE]``
    store one message: the contents of FILE (relative to the transcript's folder, else to
    tests/data/messages/), or else the ``| `` lines that follow (joined with CRLF, ending with
    CRLF). The internal date defaults to 2026-01-15T12:00:00+00:00.
``fixture: messages ADDRESS MAILBOX COUNT [FLAG ...]``
    store COUNT small generated messages ("Subject: message N", 1-based within the line).
``fixture: setting ADDRESS KEY=VALUE``
    an account setting, as ``pobox user set`` makes it (``quota.storage=512K``).
``fixture: quota-admin ADDRESS``
    the account may change quotas with SETQUOTA (``[quota] admins``).
``fixture: urlauth-submitter ADDRESS``
    the account is a message submission entity: it may URLFETCH ``submit+`` URLs
    (``[imap] urlauth_submitters``).
``fixture: metadata KEY=VALUE``
    a ``[metadata]`` setting (``max_entries_per_mailbox=10``; ``admins=ADDRESS`` adds one).
``state: authenticated ADDRESS PASSWORD`` / ``state: selected ADDRESS PASSWORD MAILBOX``
    every connection logs in (and selects) before its first line; those responses are not
    part of the transcript. Without ``state:`` connections start not authenticated.
``connections: N``
    documentation only. A connection opens (and runs ``state:``) at its first ``C:``/``S:``
    line, so with ``state: selected`` the connection used first is the one that claims the
    ``\Recent`` messages (RFC 3501 §2.3.2).

Conversation lines:

``C: text``
    sent verbatim with CRLF (UTF-8). A line ending in ``{n}`` is a synchronizing literal: put the
    server's ``S: + ...`` before the next ``C:`` line, which carries the literal bytes; after
    ``{n+}`` the next ``C:`` follows at once. ``C:`` with nothing after it sends an empty line.
``S: text``
    the next line from the server, matched exactly and case-sensitively. Lines are read up to
    CRLF, so a server literal is matched line by line.
``...`` at the end of an ``S:`` line
    matches the rest of the line; allowed only when the line is a status response
    (``tag|* OK|NO|BAD|BYE|PREAUTH ...``) or a continuation (``+ ...``).
``[any order]`` … ``[end]``
    the ``S:`` lines between are untagged lines that may arrive in any order.
``$name`` (a lower-case letter, then lower-case letters, digits, ``_``)
    captures a run of characters other than space, parentheses and brackets on first use and
    must match the same text afterwards; in ``C:`` lines it is replaced by the captured text.
    ``$$`` is a literal ``$``; ``$Forwarded``-style keywords (upper-case first letter) are
    literal as written, a lower-case keyword like ``$label1`` must be written ``$$label1``.
``N C:`` / ``N S:``
    the line belongs to connection N (lines without a number belong to connection 1).

When the conversation ends, each connection still open gets ``ZZ LOGOUT``: the server must
answer with exactly ``* BYE`` and ``ZZ OK``, so any line the transcript did not expect fails the
file, as does a missing one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pobox.imap import mutf7
from pobox.server import Running
from pobox.service.content import spool_message
from pobox.service.mailboxes import Mailboxes
from pobox.store.api import Account

DATA = Path(__file__).parent.parent / "data" / "messages"
TIMEOUT = 10.0
DEFAULT_DATE = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

_LINE = re.compile(r"^(?:(\d+) )?([CS]):(?: (.*))?$")
_CAPTURE = re.compile(r"\$\$|\$([a-z][a-z0-9_]*)")
_STATUS = re.compile(r"^(?:\S+ (?:OK|NO|BAD|BYE|PREAUTH)(?: .*)?|\+.*) ?$")


class TranscriptError(Exception):
    """The transcript file itself is malformed."""


@dataclass
class Fixture:
    lineno: int
    words: list[str]
    body: list[str] = field(default_factory=list)


@dataclass
class Step:
    lineno: int
    connection: str
    kind: str  # "C", "S" or "any" (an [any order] block: ``lines`` holds the S: texts)
    text: str = ""
    lines: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Transcript:
    path: Path
    fixtures: list[Fixture] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


def _words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    return list(lexer)


def parse(path: Path) -> Transcript:
    transcript = Transcript(path)
    block: Step | None = None
    in_header = True
    for lineno, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        if in_header:
            if raw.startswith("| ") or raw == "|":
                if not transcript.fixtures:
                    raise TranscriptError(f"{path.name}:{lineno}: '|' line without a fixture")
                transcript.fixtures[-1].body.append(raw[2:])
                continue
            if raw.startswith("fixture:"):
                transcript.fixtures.append(Fixture(lineno, _words(raw[len("fixture:") :])))
                continue
            if raw.startswith("state:"):
                transcript.state = _words(raw[len("state:") :])
                continue
            if raw.startswith("connections:"):
                continue
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.strip() == "[any order]":
            if block is not None:
                raise TranscriptError(f"{path.name}:{lineno}: nested [any order]")
            block = Step(lineno, "", "any")
            in_header = False
            continue
        if raw.strip() == "[end]":
            if block is None or not block.lines:
                raise TranscriptError(f"{path.name}:{lineno}: [end] without an [any order] block")
            transcript.steps.append(block)
            block = None
            continue
        match = _LINE.match(raw)
        if match is None:
            raise TranscriptError(f"{path.name}:{lineno}: cannot read {raw!r}")
        in_header = False
        connection, kind, text = match.group(1) or "1", match.group(2), match.group(3) or ""
        if kind == "S" and text.endswith("...") and not _STATUS.match(text[:-3]):
            raise TranscriptError(
                f"{path.name}:{lineno}: '...' only completes OK/NO/BAD/BYE/PREAUTH or '+' lines"
            )
        if block is not None:
            if kind != "S" or not text.startswith("* "):
                raise TranscriptError(f"{path.name}:{lineno}: only untagged S: lines in a block")
            if block.connection and block.connection != connection:
                raise TranscriptError(f"{path.name}:{lineno}: a block is for one connection")
            block.connection = connection
            block.lines.append((lineno, text))
            continue
        transcript.steps.append(Step(lineno, connection, kind, text))
    if block is not None:
        raise TranscriptError(f"{path.name}: [any order] without [end]")
    return transcript


# --------------------------------------------------------------------------- matching


def _pattern(expected: str, captures: dict[str, str]) -> re.Pattern[str]:
    rest_of_line = expected.endswith("...")
    if rest_of_line:
        expected = expected[:-3]
    out: list[str] = []
    pos = 0
    fresh: set[str] = set()
    for m in _CAPTURE.finditer(expected):
        out.append(re.escape(expected[pos : m.start()]))
        pos = m.end()
        name = m.group(1)
        if name is None:
            out.append(re.escape("$"))
        elif name in captures:
            out.append(re.escape(captures[name]))
        elif name in fresh:
            out.append(f"(?P={name})")
        else:
            fresh.add(name)
            out.append(rf"(?P<{name}>[^\s()\[\]]+)")
    out.append(re.escape(expected[pos:]))
    if rest_of_line:
        out.append(".*")
    return re.compile("".join(out), re.DOTALL)


def _substitute(text: str, captures: dict[str, str]) -> str:
    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return "$"
        if name not in captures:
            raise TranscriptError(f"${name} is used before it was captured")
        return captures[name]

    return _CAPTURE.sub(replace, text)


# --------------------------------------------------------------------------- running


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closed: bool = False


class Conversation:
    def __init__(self, transcript: Transcript, running: Running) -> None:
        self.transcript = transcript
        self.running = running
        self.connections: dict[str, _Connection] = {}
        self.captures: dict[str, str] = {}
        self.seen: list[str] = []

    def fail(self, lineno: int, message: str) -> None:
        context = "\n".join(self.seen[-20:])
        name = self.transcript.path.name
        pytest.fail(f"{name}:{lineno}: {message}\n--- the conversation so far ---\n{context}")

    async def _read(self, name: str, lineno: int, expecting: str) -> str:
        conn = await self._connection(name, lineno)
        try:
            raw = await asyncio.wait_for(conn.reader.readuntil(b"\r\n"), TIMEOUT)
        except asyncio.IncompleteReadError as exc:
            conn.closed = True
            self.fail(lineno, f"connection closed (after {exc.partial!r}); expected {expecting!r}")
        except TimeoutError:
            self.fail(lineno, f"no line from the server within {TIMEOUT}s; expected {expecting!r}")
        text = raw[:-2].decode("utf-8", "surrogateescape")
        self.seen.append(f"{name} S: {text}")
        return text

    async def _connection(self, name: str, lineno: int) -> _Connection:
        conn = self.connections.get(name)
        if conn is not None:
            return conn
        reader, writer = await asyncio.open_connection("127.0.0.1", self.running.port("imap"))
        conn = self.connections[name] = _Connection(reader, writer)
        greeting = await self._read(name, lineno, "* OK greeting")
        if not greeting.startswith("* OK "):
            self.fail(lineno, f"unexpected greeting {greeting!r}")
        await self._prepare(name, conn, lineno)
        return conn

    async def _setup_command(self, name: str, conn: _Connection, lineno: int, line: str) -> None:
        tag = line.split(" ", 1)[0]
        conn.writer.write(line.encode("utf-8") + b"\r\n")
        await conn.writer.drain()
        self.seen.append(f"{name} C: {line}   (state: line)")
        while True:
            got = await self._read(name, lineno, f"{tag} OK")
            if got.startswith(tag + " "):
                if not got.startswith(tag + " OK"):
                    self.fail(lineno, f"state: {line!r} failed: {got!r}")
                return

    async def _prepare(self, name: str, conn: _Connection, lineno: int) -> None:
        match self.transcript.state:
            case []:
                return
            case ["authenticated", address, password]:
                await self._setup_command(name, conn, lineno, f'ZA LOGIN "{address}" "{password}"')
            case ["selected", address, password, mailbox]:
                await self._setup_command(name, conn, lineno, f'ZA LOGIN "{address}" "{password}"')
                encoded = mutf7.encode(mailbox).decode("ascii")
                await self._setup_command(name, conn, lineno, f'ZB SELECT "{encoded}"')
            case other:
                raise TranscriptError(f"unknown state: {' '.join(other)}")

    async def send(self, step: Step) -> None:
        conn = await self._connection(step.connection, step.lineno)
        try:
            text = _substitute(step.text, self.captures)
        except TranscriptError as exc:
            self.fail(step.lineno, str(exc))
        self.seen.append(f"{step.connection} C: {text}")
        try:
            conn.writer.write(text.encode("utf-8") + b"\r\n")
            await conn.writer.drain()
        except ConnectionError as exc:
            self.fail(step.lineno, f"could not send: {exc}")

    async def expect(self, step: Step) -> None:
        got = await self._read(step.connection, step.lineno, step.text)
        match = _pattern(step.text, self.captures).fullmatch(got)
        if match is None:
            self.fail(step.lineno, f"expected {step.text!r}\n           got {got!r}")
        else:
            self.captures.update(match.groupdict())

    async def expect_any_order(self, step: Step) -> None:
        pending = list(step.lines)
        for _ in step.lines:
            got = await self._read(step.connection, step.lineno, "a line of the block")
            for i, (_lineno, text) in enumerate(pending):
                match = _pattern(text, self.captures).fullmatch(got)
                if match is not None:
                    self.captures.update(match.groupdict())
                    del pending[i]
                    break
            else:
                wanted = "\n  ".join(text for _, text in pending)
                self.fail(step.lineno, f"unexpected {got!r}; still expecting:\n  {wanted}")

    async def finish(self) -> None:
        """Log out every open connection; anything unread before the BYE is an extra line."""
        for name, conn in self.connections.items():
            lines: list[str] = []
            try:
                conn.writer.write(b"ZZ LOGOUT\r\n")
                await conn.writer.drain()
            except ConnectionError:
                pass
            while True:
                try:
                    raw = await asyncio.wait_for(conn.reader.readuntil(b"\r\n"), TIMEOUT)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                line = raw[:-2].decode("utf-8", "surrogateescape")
                lines.append(line)
                if line.startswith("ZZ "):
                    break
            if lines and (
                len(lines) != 2 or not lines[0].startswith("* BYE") or lines[1][:5] != "ZZ OK"
            ):
                extra = "\n  ".join(lines)
                self.fail(0, f"connection {name}: lines the transcript did not expect:\n  {extra}")
            conn.writer.close()
            try:
                await conn.writer.wait_closed()
            except ConnectionError:
                pass


# --------------------------------------------------------------------------- fixtures


def _message_text(address: str, number: int) -> bytes:
    lines = [
        "From: Fixture Sender <sender@example.org>",
        f"To: <{address}>",
        f"Subject: message {number}",
        "Date: Thu, 15 Jan 2026 12:00:00 +0000",
        f"Message-ID: <fixture-{number}@example.org>",
        "",
        f"This is message {number}.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


async def _store_message(
    running: Running, account: Account, mailbox: str, content: bytes, options: list[str]
) -> None:
    store = running.service.store
    target = await Mailboxes(store).get(account, mailbox)
    flags = frozenset(o for o in options if "=" not in o)
    when = DEFAULT_DATE
    for option in options:
        if option.startswith("date="):
            when = datetime.fromisoformat(option[len("date=") :])
    message = await asyncio.to_thread(
        lambda: spool_message(store.new_spool(), [content], flags=flags, internal_date=when)
    )
    await store.append(target.id, message)


async def apply_fixture(transcript: Transcript, fixture: Fixture, running: Running) -> None:
    service = running.service
    mailboxes = Mailboxes(service.store)
    match fixture.words:
        case ["account", address, password]:
            await service.accounts.add(address, password)
        case ["mailbox", address, name, *use]:
            account = await service.accounts.require(address)
            await mailboxes.create(account, name, use)
        case ["subscribe", address, name]:
            await mailboxes.subscribe(await service.accounts.require(address), name)
        case ["unsubscribe", address, name]:
            await mailboxes.unsubscribe(await service.accounts.require(address), name)
        case ["message", address, mailbox, *options]:
            account = await service.accounts.require(address)
            if "<" in options:
                where = options.index("<")
                source = transcript.path.parent / options[where + 1]
                if not source.exists():
                    source = DATA / options[where + 1]
                content = source.read_bytes()
                options = options[:where] + options[where + 2 :]
            else:
                content = "".join(line + "\r\n" for line in fixture.body).encode("utf-8")
            await _store_message(running, account, mailbox, content, options)
        case ["messages", address, mailbox, count, *options]:
            account = await service.accounts.require(address)
            for number in range(1, int(count) + 1):
                content = _message_text(address, number)
                await _store_message(running, account, mailbox, content, options)
        case ["setting", address, assignment]:
            key, _, value = assignment.partition("=")
            await service.accounts.set_setting(address, key, value or None)
        case ["quota-admin", address]:
            quota = service.quota
            admins = (*quota.config.admins, address)
            quota.reconfigure(dataclasses.replace(quota.config, admins=admins), quota.hostname)
        case ["urlauth-submitter", address]:
            urlauth = service.urlauth
            urlauth.submitters = (*urlauth.submitters, address)
        case ["metadata", assignment]:
            # a [metadata] setting (admins: one more address)
            key, _, value = assignment.partition("=")
            current = service.metadata.config
            wanted: object = value
            if key == "admins":
                wanted = (*current.admins, value)
            elif isinstance(getattr(current, key), bool):
                wanted = value == "true"
            elif isinstance(getattr(current, key), int):
                wanted = int(value)
            service.metadata.config = dataclasses.replace(current, **{key: wanted})
        case _:
            raise TranscriptError(
                f"{transcript.path.name}:{fixture.lineno}: unknown fixture {fixture.words}"
            )


async def run(transcript: Transcript, running: Running) -> None:
    for fixture in transcript.fixtures:
        await apply_fixture(transcript, fixture, running)
    conversation = Conversation(transcript, running)
    try:
        for step in transcript.steps:
            if step.kind == "C":
                await conversation.send(step)
            elif step.kind == "S":
                await conversation.expect(step)
            else:
                await conversation.expect_any_order(step)
        await conversation.finish()
    finally:
        for conn in conversation.connections.values():
            conn.writer.close()
