"""IMAP stress test in the manner of Dovecot's imaptest: pobox against Dovecot, same client code.

Each target is started fresh (pobox with its [limits] lifted, as in imap_bench.py; Dovecot through
tools/anchor_dovecot.py), with ACCOUNTS accounts whose INBOXes are first filled with PREFILL
messages over LMTP (not timed). Then CLIENTS client processes run for DURATION seconds, each
repeating imaptest's default session: LOGIN, then the states in imaptest's order, each taken with
imaptest's default probability (release-2.3, src/client-state.c):

    LIST 50%, STATUS 50%, SELECT 100%, FETCH 100%, FETCH2 100% (again 30%), STORE 50%,
    DELETE 100%, EXPUNGE 100%, APPEND 100% (again 5%), LOGOUT 100%

and then connect and LOGIN again (to a random account). With --no-logout a client stays logged
in and loops over the states after LOGIN (the command engine alone). The mailbox is kept near 30
messages as imaptest does (APPEND is skipped above it, DELETE marks more below it).

Every client keeps the state it expects and reports each disagreement as an error, as imaptest
does. When every client has accounts of its own (the default when ACCOUNTS >= CLIENTS) the
expectations are exact: message count, UIDs, flags and keywords after its own STOREs, which
messages EXPUNGE removes, STATUS counts, and the bytes of every FETCHed part against the message
that was appended or delivered. With shared accounts (ACCOUNTS < CLIENTS, or --shared) only what
holds under any interleaving is checked: EXISTS never shrinks, EXPUNGE and FETCH numbers are in
range, a sequence number keeps its UID and UIDs ascend, keywords are announced in FLAGS before
use, APPENDUID grows, the content of a part matches the message it belongs to, and a message's
ENVELOPE, BODYSTRUCTURE, size and date do not change.

Prints commands/s, logins/s, mean latency per command and the error count per target, and the
ratios pobox/dovecot of the medians. Never asserts on time.

    .venv/bin/python benchmarks/imap_stress.py [--target pobox|dovecot|both] [--clients 10]
        [--accounts 200] [--no-logout] [--duration 30] [--workers N|auto] [--rounds 3]
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import multiprocessing
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import common
from common import (
    BenchError,
    LmtpClient,
    Server,
    base_parser,
    dot_stuff,
    print_environment,
    print_table,
    target_list,
)

# pobox's protective per-process limits are lifted, as in imap_bench.py (see its comment).
POBOX_LIMITS = (
    "\n[limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n"
    "max_imap_sessions_per_account = 100000\ncommands_per_second = 1000000\n"
)
PASSWORD = "stress-password"
THRESHOLD = 30  # imaptest's MESSAGE_COUNT_THRESHOLD: the mailbox is kept near this size
# imaptest's default states after LOGIN, in its order: (name, probability %, again %).
STATES = (
    ("LIST", 50, 0),
    ("STATUS", 50, 0),
    ("SELECT", 100, 0),
    ("FETCH", 100, 0),
    ("FETCH2", 100, 30),
    ("STORE", 50, 0),
    ("DELETE", 100, 0),
    ("EXPUNGE", 100, 0),
    ("APPEND", 100, 5),
    ("LOGOUT", 100, 0),
)
REPORTED = ("CONNECT", "LOGIN", *(name for name, _, _ in STATES))
FETCH_FIELDS = ("UID", "FLAGS", "ENVELOPE", "INTERNALDATE", "BODY", "BODYSTRUCTURE", "RFC822.SIZE")
HEADER_FIELDS = ("From", "To", "Cc", "Subject", "References", "In-Reply-To", "Message-ID")
FETCH2_ITEMS = (
    "BODY.PEEK[HEADER]",
    "RFC822.HEADER",
    "BODY.PEEK[]",
    "BODY.PEEK[1]",
    "BODY.PEEK[TEXT]",
)
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Seen", "\\Draft")  # \Deleted only by DELETE
KEYWORDS = ("$Label1", "$Label2", "$Label3", "$Label4", "$Label5")
MAX_ERROR_TEXTS = 20


def account_name(index: int) -> str:
    return f"stress{index:03d}@localhost"


# --------------------------------------------------------------------------- the message corpus
_WORDS = (
    "meeting project budget review quarterly report draft proposal schedule team update release "
    "server migration deadline invoice contract customer support ticket issue question answer "
    "thanks please attached document version summary agenda notes follow-up decision plan risk "
    "estimate travel conference lunch office holiday weekend morning afternoon tomorrow today "
    "network storage backup database performance benchmark latency throughput capacity design "
    "the a of and to in for on with as by at from this that we you they it is are was be will "
    "have has can should would could not all any some more less new old first last next final"
)
WORDS = _WORDS.split()
FIRST = "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert"
LAST = "Smith Jones Brown Taylor Wilson Davies Evans Thomas Roberts Walker Wright Green Hall"
DOMAINS = ("example.org", "example.com", "mail.example.net", "corp.example", "lists.example.org")
MAILERS = ("Mozilla Thunderbird 115.5", "Apple Mail (2.3731)", "Microsoft Outlook 16.0", "mutt 2.2")


@dataclass
class Corpus:
    messages: list[bytes] = field(default_factory=list)
    headers: list[bytes] = field(default_factory=list)  # BODY[HEADER], blank line included
    texts: list[bytes] = field(default_factory=list)  # BODY[TEXT]
    parts1: list[bytes] = field(default_factory=list)  # BODY[1]
    fields: list[list[tuple[str, bytes]]] = field(default_factory=list)  # (lower name, raw)
    dates: list[datetime] = field(default_factory=list)
    by_msgid: dict[bytes, int] = field(default_factory=dict)
    by_text: dict[bytes, int] = field(default_factory=dict)
    by_part1: dict[bytes, int] = field(default_factory=dict)

    def header_fields(self, idx: int, names: list[str]) -> bytes:
        wanted = {n.lower() for n in names}
        return b"".join(raw for name, raw in self.fields[idx] if name in wanted) + b"\r\n"


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + rng.choice(".!?.")


def _paragraphs(rng: random.Random, size: int) -> bytes:
    """Plain text of about *size* bytes in lines under 78 characters, CRLF ends."""
    lines: list[str] = []
    total = 0
    while total < size:
        line = _sentence(rng, rng.randint(4, 11))
        if rng.random() < 0.1:
            line = "> " + line
        elif line.startswith("From "):  # an mbox separator to imaptest's mbox reader
            line = "Also f" + line[1:]
        lines.append(line)
        total += len(line) + 2
        if rng.random() < 0.2:
            lines.append("")
            total += 2
    return ("\r\n".join(lines) + "\r\n").encode()


def _base64_lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i : i + 76] + b"\r\n" for i in range(0, len(text), 76))


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST.split()), rng.choice(LAST.split())
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"


def _make_corpus_message(rng: random.Random, i: int, size: int) -> tuple[bytes, bytes, datetime]:
    """(message, BODY[1], date): headers, then one of plain, alternative or mixed bodies."""
    date = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(3 * 10**7))
    date = date.astimezone(timezone(timedelta(hours=rng.choice((-8, -5, 0, 1, 2, 9)))))
    name, addr = _person(rng)
    to = ", ".join(f'"{n}" <{a}>' for n, a in (_person(rng) for _ in range(rng.randint(1, 3))))
    subject = _sentence(rng, rng.randint(2, 8))[:-1]
    if rng.random() < 0.3:
        subject = "Re: " + subject
    if rng.random() < 0.1:
        subject = "=?UTF-8?Q?Caf=C3=A9_" + subject.replace(" ", "_")[:30] + "?="
    msgid = f"<stress.{i}.{rng.getrandbits(48):012x}@{rng.choice(DOMAINS)}>"
    lines = [
        f"Return-Path: <{addr}>",
        f"Received: from mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)} (mx.example [192.0.2."
        f"{rng.randint(1, 254)}])\r\n\tby mail.example.org with ESMTPS id {rng.getrandbits(40):x}"
        f"\r\n\tfor <stress@localhost>; {format_datetime(date)}",
        f'From: "{name}" <{addr}>',
        f"To: {to}",
    ]
    if rng.random() < 0.3:
        lines.append(f"Cc: {_person(rng)[1]}, {_person(rng)[1]}")
    lines += [f"Subject: {subject}", f"Date: {format_datetime(date)}", f"Message-ID: {msgid}"]
    if subject.startswith("Re: "):
        parent = f"<stress.{max(0, i - rng.randint(1, 20))}.parent@{DOMAINS[0]}>"
        lines += [
            f"In-Reply-To: {parent}",
            f"References: <thread.{i % 17}@{DOMAINS[1]}>\r\n {parent}",
        ]
    if rng.random() < 0.5:
        lines.append(f"X-Mailer: {rng.choice(MAILERS)}")
    lines.append("MIME-Version: 1.0")
    kind = rng.choices(("plain", "alternative", "mixed"), (40, 25, 35))[0]
    boundary = f"----=_Part_{i}_{rng.getrandbits(32):08x}"
    if kind == "plain":
        qp = rng.random() < 0.3
        lines.append("Content-Type: text/plain; charset=utf-8; format=flowed")
        lines.append(f"Content-Transfer-Encoding: {'quoted-printable' if qp else '7bit'}")
        body = _paragraphs(rng, max(200, size - 900))
        if qp:
            body = body.replace(b"meeting", b"r=C3=A9union")
        part1 = body
    elif kind == "alternative":
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        plain = _paragraphs(rng, max(200, (size - 1200) // 3))
        html = (
            b"<html><body>\r\n" + plain.replace(b"\r\n\r\n", b"\r\n<p>\r\n") + b"</body></html>\r\n"
        )
        body = (
            b"This is a multi-part message in MIME format.\r\n"
            + _part(boundary, b"text/plain; charset=us-ascii", b"7bit", plain)
            + _part(boundary, b"text/html; charset=us-ascii", b"7bit", html)
            + f"--{boundary}--\r\n".encode()
        )
        part1 = plain
    else:
        lines.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        plain = _paragraphs(rng, rng.randint(200, 3000))
        if rng.random() < 0.3:
            inner = f"----=_Alt_{i}_{rng.getrandbits(32):08x}"
            html = b"<html><body><pre>\r\n" + plain + b"</pre></body></html>\r\n"
            part1 = (
                _part(inner, b"text/plain; charset=us-ascii", b"7bit", plain)
                + _part(inner, b"text/html; charset=us-ascii", b"7bit", html)
                + f"--{inner}--\r\n".encode()
            )
            first = _part(
                boundary, f'multipart/alternative; boundary="{inner}"'.encode(), b"", part1
            )
        else:
            part1 = plain
            first = _part(boundary, b"text/plain; charset=us-ascii", b"7bit", plain)
        body = b"This is a multi-part message in MIME format.\r\n" + first
        attachments = rng.randint(1, 2)
        room = max(300, size - 1500 - len(plain))
        for n in range(attachments):
            kind_name, magic = rng.choice(
                (("application/pdf", b"%PDF-1.4\n"), ("image/png", b"\x89PNG\r\n\x1a\n"))
            )
            ext = "pdf" if "pdf" in kind_name else "png"
            blob = magic + rng.randbytes(max(100, room // attachments * 3 // 4))
            ctype = f'{kind_name}; name="file{n}.{ext}"'.encode()
            disposition = f'attachment; filename="file{n}.{ext}"'.encode()
            body += _part(boundary, ctype, b"base64", _base64_lines(blob), disposition)
        body += f"--{boundary}--\r\n".encode()
    header = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return header + body, part1, date


def _part(boundary: str, ctype: bytes, cte: bytes, body: bytes, disposition: bytes = b"") -> bytes:
    head = b"--" + boundary.encode() + b"\r\nContent-Type: " + ctype + b"\r\n"
    if cte:
        head += b"Content-Transfer-Encoding: " + cte + b"\r\n"
    if disposition:
        head += b"Content-Disposition: " + disposition + b"\r\n"
    return head + b"\r\n" + body + b"\r\n"


_FIELD = re.compile(rb"([^:\r\n]+):.*?\r\n(?![ \t])", re.S)


def build_corpus(count: int = 300, seed: int = 9) -> Corpus:
    """*count* messages of 1-50 KB (log-uniform), the same for every run with the same seed."""
    rng = random.Random(seed)
    corpus = Corpus()
    for i in range(count):
        size = int(1000 * 50 ** rng.random())
        message, part1, date = _make_corpus_message(rng, i, size)
        split = message.index(b"\r\n\r\n") + 4
        header, text = message[:split], message[split:]
        corpus.messages.append(message)
        corpus.headers.append(header)
        corpus.texts.append(text)
        corpus.parts1.append(part1)
        corpus.dates.append(date)
        corpus.fields.append(
            [(m[1].decode().strip().lower(), m[0]) for m in _FIELD.finditer(header[:-2])]
        )
        msgid = re.search(rb"\r\nMessage-ID: (<[^>]+>)", header)
        assert msgid is not None
        corpus.by_msgid[msgid[1]] = i
        corpus.by_text[_digest(text)] = i
        corpus.by_part1[_digest(part1)] = i
    return corpus


def write_mbox(corpus: Corpus, path: Path) -> None:
    """The corpus as an mbox with CRLF line ends (what imaptest's mbox= option reads)."""
    with path.open("wb") as f:
        for message, date in zip(corpus.messages, corpus.dates, strict=True):
            stamp = date.astimezone(UTC).strftime("%a %b %d %H:%M:%S %Y")
            f.write(f"From sender@example.org {stamp}\r\n".encode())
            f.write(re.sub(rb"(?m)^(>*From )", rb">\1", message))
            f.write(b"\r\n")


def imap_date(date: datetime) -> str:
    return date.strftime("%d-%b-%Y %H:%M:%S %z")


# --------------------------------------------------------------------------- response parsing
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
_TOKEN = re.compile(
    rb" *(?:(\()|(\))"  # ( )
    rb'|"((?:[^"\\]|\\.)*)"'  # "quoted"
    rb"|\{(\d+)\}\r\n"  # {literal}
    rb'|([^ ()"{\r\n\[]+(?:\[[^\]]*\][^ ()\r\n]*)?))'  # atom, BODY[...]<n>
)
_UNTAGGED_NUM = re.compile(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH|RECENT)\b ?")
_CODE = re.compile(rb"\[([A-Z-]+)(?: ([^\]]*))?\]")


class ProtocolError(Exception):
    pass


def parse_list(data: bytes, pos: int) -> tuple[list[Any], int]:
    """The parenthesized list that starts at data[pos] ('('): atoms as str, strings as bytes,
    NIL as None; literals are inline (``{n}\\r\\n`` and n bytes)."""
    if data[pos : pos + 1] != b"(":
        raise ProtocolError(f"expected '(' at {pos}: {data[pos : pos + 40]!r}")
    root: list[Any] = []
    stack = [root]
    pos += 1
    while True:
        m = _TOKEN.match(data, pos)
        if m is None or m.end() == pos:
            raise ProtocolError(f"cannot parse at {pos}: {data[pos : pos + 60]!r}")
        pos = m.end()
        if m[1]:
            new: list[Any] = []
            stack[-1].append(new)
            stack.append(new)
        elif m[2]:
            stack.pop()
            if not stack:
                return root, pos
        elif m[3] is not None:
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", m[3]) if b"\\" in m[3] else m[3])
        elif m[4]:
            n = int(m[4])
            stack[-1].append(data[pos : pos + n])
            pos += n
        else:
            atom = m[5].decode("latin-1")
            stack[-1].append(None if atom == "NIL" else atom)


# --------------------------------------------------------------------------- the client
@dataclass(eq=False)
class Msg:
    """What a client knows of one message: None where it does not know."""

    uid: int | None = None
    idx: int | None = None  # corpus index
    flags: frozenset[str] | None = None  # without \Recent
    exact: bool = False  # APPENDed by us: stored byte for byte (LMTP may add trace headers)
    date: datetime | None = None  # INTERNALDATE given with APPEND
    seen: dict[str, Any] | None = None  # ENVELOPE, BODYSTRUCTURE, ... as first FETCHed


class Disconnected(Exception):
    pass


class StressClient:
    """One client process: sessions of imaptest's default states against one server."""

    def __init__(self, server: Server, index: int, args: Any, corpus: Corpus, accounts: list[int]):
        self.server = server
        self.index = index
        self.args = args
        self.corpus = corpus
        self.accounts = accounts
        self.exclusive = not args.shared_effective
        self.rng = random.Random(args.seed * 7919 + index)
        self.counts: dict[str, int] = dict.fromkeys(REPORTED, 0)
        self.seconds: dict[str, float] = dict.fromkeys(REPORTED, 0.0)
        self.errors = 0
        self.kinds: dict[str, int] = {}  # error text with numbers as N -> count
        self.expunge_issued = 0
        self.error_texts: list[str] = []
        self.logins = 0
        # exclusive mode: the truth of each of our accounts, kept across sessions
        self.models: dict[int, list[Msg]] = {}
        self.pendings: dict[int, list[Msg]] = {}
        self.uidvalidity: dict[int, int] = {}
        self.appended: dict[tuple[int, int], Msg] = {}  # (account, uid) -> what we appended
        self.keywords_ok = True
        self.sock: socket.socket | None = None
        self.tag = 0
        self.literal_plus = True

    # ------------------------------------------------------------------ errors and plumbing
    def error(self, text: str, kind: str = "") -> None:
        self.errors += 1
        if not kind:
            for cut in (" changed", " is not", " is ", "; ", ": b'", " (got"):
                if cut in text:
                    text_kind = text[: text.index(cut) + len(cut)]
                    break
            else:
                text_kind = text
            kind = re.sub(r"\d+", "N", text_kind)[:90]
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if len(self.error_texts) < MAX_ERROR_TEXTS:
            self.error_texts.append(f"{self.server.name} client {self.index} {self.where}: {text}")

    @property
    def where(self) -> str:
        return f"[{account_name(self.account)} {self.current}]"

    def connect(self) -> None:
        t0 = time.perf_counter()
        sock = socket.create_connection((self.server.host, self.server.imap_port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=1 << 16)
        greeting = self.line()
        if not greeting.startswith(b"* OK"):
            raise Disconnected(f"greeting {greeting[:80]!r}")
        self.record("CONNECT", time.perf_counter() - t0)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.reader.close()
                self.sock.close()
        self.sock = None

    def record(self, name: str, seconds: float) -> None:
        self.counts[name] += 1
        self.seconds[name] += seconds

    def line(self) -> bytes:
        parts = []
        while True:
            line = self.reader.readline()
            if not line:
                raise Disconnected("connection closed by the server")
            parts.append(line)
            match = _LITERAL.search(line)
            if match is None:
                return b"".join(parts)
            n = int(match[1])
            data = self.reader.read(n)
            if len(data) != n:
                raise Disconnected("connection closed inside a literal")
            parts.append(data)

    def command(
        self, text: bytes, literal: bytes | None = None, name: str = ""
    ) -> tuple[bytes, list[bytes]]:
        """Send one command, handle every untagged response; (status line, untagged lines)."""
        assert self.sock is not None
        self.tag += 1
        tag = b"s%d " % self.tag
        self.fetched = {}
        t0 = time.perf_counter()
        if literal is None:
            self.sock.sendall(tag + text + b"\r\n")
        elif self.literal_plus:
            self.sock.sendall(tag + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        else:
            self.sock.sendall(tag + text + b" {%d}\r\n" % len(literal))
            reply = self.line()
            if not reply.startswith(b"+"):
                raise Disconnected(f"no continuation for the literal: {reply[:80]!r}")
            self.sock.sendall(literal + b"\r\n")
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag):
                status = line[len(tag) :].rstrip(b"\r\n")
                if name:
                    self.record(name, time.perf_counter() - t0)
                if status.startswith(b"OK"):
                    pass
                elif (
                    not self.exclusive
                    and name in ("FETCH", "FETCH2", "STORE", "DELETE")
                    and status.startswith(b"NO [EXPUNGEISSUED]")
                ):
                    self.expunge_issued += 1  # RFC 2180 4.1.2; imaptest excuses it too
                else:
                    what = status[:2] if b"]" not in status else status[: status.index(b"]") + 1]
                    kind = f"{name or text.split()[0].decode()} -> {what.decode(errors='replace')}"
                    self.error(f"{text[:70]!r} -> {status[:160]!r}", kind)
                return status, lines
            if line.startswith(b"* BYE") and not text.startswith(b"LOGOUT"):
                self.error(f"unexpected BYE: {line[:120]!r}")
                raise Disconnected("BYE")
            lines.append(line)
            if line.startswith(b"* "):
                try:
                    self.untagged(line)
                except ProtocolError as exc:
                    self.error(f"unparsable response {exc}")

    # ------------------------------------------------------------------ untagged responses
    def untagged(self, line: bytes) -> None:
        m = _UNTAGGED_NUM.match(line)
        if m is None:
            if line.startswith(b"* FLAGS "):
                flags, _ = parse_list(line, 8)
                self.keywords = {f for f in flags if isinstance(f, str) and f[:1] != "\\"}
            elif line.startswith(b"* OK [PERMANENTFLAGS "):
                self.permanent_star = b"\\*" in line
            return
        number, kind = int(m[1]), m[2]
        if self.current == "SELECT" and self.view is None:
            if kind == b"EXISTS":
                self.select_exists = number
            elif kind != b"RECENT":
                self.error(f"{line[:80]!r} during SELECT")
            return
        view = self.view
        if view is None:
            if kind != b"RECENT":
                self.error(f"{kind.decode()} while no mailbox is selected: {line[:80]!r}")
            return
        if kind == b"EXISTS":
            self.on_exists(number)
        elif kind == b"EXPUNGE":
            if not 1 <= number <= len(view):
                self.error(f"EXPUNGE {number} with only {len(view)} messages")
                return
            if self.current in ("FETCH", "FETCH2", "STORE", "DELETE"):
                self.error(f"EXPUNGE {number} during {self.current} (RFC 3501 7.4.1 forbids it)")
            msg = view.pop(number - 1)
            if self.exclusive:
                if self.current != "EXPUNGE":
                    self.error(f"EXPUNGE {number} during {self.current}, nobody else expunges")
                elif msg.flags is not None and "\\Deleted" not in msg.flags:
                    self.error(f"EXPUNGE {number} (UID {msg.uid}) of a message without \\Deleted")
            self.expunged_now += 1
        elif kind == b"FETCH":
            if not 1 <= number <= len(view):
                self.error(f"FETCH {number} with only {len(view)} messages")
                return
            items, _ = parse_list(line, m.end())
            self.on_fetch(number, view[number - 1], items)

    def on_exists(self, number: int) -> None:
        view = self.view
        assert view is not None
        if number < len(view):
            self.error(f"EXISTS {number} after {len(view)} without EXPUNGE")
            return
        grow = number - len(view)
        if not self.exclusive:
            view.extend(Msg() for _ in range(grow))
            return
        pending = self.pendings[self.account]
        if grow > len(pending):
            self.error(f"EXISTS {number}: {grow} new messages, but {len(pending)} were appended")
            view.extend(Msg() for _ in range(grow - len(pending)))
            grow = len(pending)
        view.extend(pending[:grow])
        del pending[:grow]

    def on_fetch(self, number: int, msg: Msg, items: list[Any]) -> None:
        if len(items) % 2:
            raise ProtocolError(f"odd FETCH item list for {number}")
        got = self.fetched.setdefault(number, {})
        pairs = []
        for i in range(0, len(items), 2):
            key, value = items[i], items[i + 1]
            if not isinstance(key, str):
                raise ProtocolError(f"FETCH item name {key!r}")
            key = key.upper()
            got[key] = value
            if key == "UID":
                self.on_uid(number, msg, int(value))
            elif key == "FLAGS":
                self.on_flags(number, msg, value)
            else:
                pairs.append((key, value))
        for key, value in pairs:  # after UID, which may tell which message this is
            self.check_item(number, msg, key, value)

    def on_uid(self, number: int, msg: Msg, uid: int) -> None:
        if msg.uid is not None and msg.uid != uid:
            self.error(f"seq {number}: UID {uid}, earlier {msg.uid}")
            return
        if msg.uid is None:
            view = self.view
            assert view is not None
            before = next((m.uid for m in reversed(view[: number - 1]) if m.uid), 0)
            after = next((m.uid for m in view[number:] if m.uid), None)
            if uid <= before or (after is not None and uid >= after):
                self.error(f"seq {number}: UID {uid} out of order ({before} before, {after} after)")
            msg.uid = uid
            mine = self.appended.get((self.account, uid))
            if mine is not None and msg.idx is None:
                msg.idx, msg.exact, msg.date = mine.idx, True, mine.date

    def on_flags(self, number: int, msg: Msg, value: Any) -> None:
        flags = frozenset(f for f in value if f != "\\Recent")
        for flag in flags:
            if flag[:1] != "\\" and flag not in self.keywords:
                self.error(f"keyword {flag} in FETCH before FLAGS announced it")
                self.keywords.add(flag)
        if self.exclusive and msg.flags is not None and msg.flags != flags:
            self.error(
                f"seq {number} UID {msg.uid}: FLAGS {sorted(flags)}, expected {sorted(msg.flags)}"
            )
        if not self.exclusive or msg.flags is None:
            msg.flags = flags

    def check_item(self, number: int, msg: Msg, key: str, value: Any) -> None:
        corpus = self.corpus
        if not self.exclusive and _ghost(key, value):
            return  # RFC 2180 4.1.3: what a server may return for a message expunged elsewhere
        if key in ("ENVELOPE", "BODYSTRUCTURE", "BODY", "INTERNALDATE", "RFC822.SIZE"):
            if msg.seen is None:
                msg.seen = {}
            first = msg.seen.setdefault(key, value)
            if first != value:
                self.error(f"seq {number} UID {msg.uid}: {key} changed: {first!r} -> {value!r}")
                return
        if key == "ENVELOPE":
            msgid = value[9] if isinstance(value, list) and len(value) == 10 else None
            idx = corpus.by_msgid.get(msgid) if isinstance(msgid, bytes) else None
            if idx is None:
                self.error(f"seq {number}: ENVELOPE with unknown Message-ID {msgid!r}")
            else:
                self.learn(number, msg, idx)
            return
        idx = msg.idx
        if key == "RFC822.SIZE":
            if idx is not None:
                size, want = int(value), len(corpus.messages[idx])
                if size != want if msg.exact else size < want:
                    self.error(f"seq {number} UID {msg.uid}: RFC822.SIZE {size}, message {want}")
            return
        if key == "INTERNALDATE":
            if msg.date is not None:
                got = datetime.strptime(value.decode(), "%d-%b-%Y %H:%M:%S %z")
                if got != msg.date:
                    self.error(f"seq {number}: INTERNALDATE {value!r}, appended {msg.date}")
            return
        if not isinstance(value, bytes) and key.startswith(("BODY[", "RFC822")):
            if value is not None or self.exclusive:  # NIL: expunged by another session
                self.error(f"seq {number}: {key} is {value!r}")
            return
        if key in ("BODY[]", "RFC822", "BODY[HEADER]", "RFC822.HEADER"):
            whole = key in ("BODY[]", "RFC822")
            if idx is None:
                found = re.search(rb"\r\nMessage-ID: (<[^>]+>)", value)
                idx = corpus.by_msgid.get(found[1]) if found else None
                if idx is None:
                    self.error(f"seq {number}: {key} of a message that was never sent")
                    return
                self.learn(number, msg, idx)
            want = corpus.messages[idx] if whole else corpus.headers[idx]
            ok = value == want if msg.exact else value.endswith(want)
            extra = value[: len(value) - len(want)]
            if not ok or b"\r\n\r\n" in extra or (extra and not extra.endswith(b"\r\n")):
                self.error(
                    f"seq {number} UID {msg.uid}: {key} ({len(value)} bytes) is not message "
                    f"{idx}'s ({len(want)} bytes){_diff(value, want)}"
                )
        elif key in ("BODY[TEXT]", "BODY[1]"):
            table, parts = (
                (corpus.by_text, corpus.texts)
                if key == "BODY[TEXT]"
                else (corpus.by_part1, corpus.parts1)
            )
            if idx is None:
                found_idx = table.get(_digest(value))
                if found_idx is None:
                    self.error(f"seq {number}: {key} ({len(value)} bytes) matches no message")
                else:
                    self.learn(number, msg, found_idx)
            elif value != parts[idx]:
                self.error(
                    f"seq {number} UID {msg.uid}: {key} ({len(value)} bytes) is not message "
                    f"{idx}'s ({len(parts[idx])} bytes){_diff(value, parts[idx])}"
                )
        elif key.startswith("BODY[HEADER.FIELDS ("):
            names = key[len("BODY[HEADER.FIELDS (") : key.index(")")].split()
            for found in re.finditer(rb"(?m)^([^ \t\r\n:]+):", value):
                if found[1].decode("latin-1").lower() not in {n.lower() for n in names}:
                    self.error(f"seq {number}: {key} returned header {found[1]!r}")
            if idx is not None:
                want = corpus.header_fields(idx, names)
                if value != want:
                    self.error(
                        f"seq {number} UID {msg.uid}: {key} is {value[:200]!r}, "
                        f"expected {want[:200]!r}"
                    )

    def learn(self, number: int, msg: Msg, idx: int) -> None:
        if msg.idx is None:
            msg.idx = idx
        elif msg.idx != idx:
            self.error(f"seq {number} UID {msg.uid}: content of message {idx}, expected {msg.idx}")

    # ------------------------------------------------------------------ the session
    def pick_account(self) -> int:
        return self.rng.choice(self.accounts)

    def run(self, deadline: float) -> None:
        self.account, self.current = self.accounts[0], "CONNECT"
        while time.perf_counter() < deadline:
            try:
                self.session(deadline)
            except Disconnected as exc:
                if time.perf_counter() < deadline:
                    self.error(f"disconnected: {exc}")
            except (OSError, ProtocolError) as exc:
                if time.perf_counter() < deadline:
                    self.error(f"{type(exc).__name__}: {exc}")
            finally:
                self.close()
                self.view = None

    def session(self, deadline: float) -> None:
        self.view: list[Msg] | None = None
        self.keywords: set[str] = set()
        self.permanent_star = False
        self.fetched: dict[int, dict[str, Any]] = {}
        self.expunged_now = 0
        self.account = self.pick_account()
        self.current = "CONNECT"
        self.connect()
        self.current = "LOGIN"
        status, _ = self.command(
            f'LOGIN "{account_name(self.account)}" "{PASSWORD}"'.encode(), name="LOGIN"
        )
        if not status.startswith(b"OK"):
            time.sleep(0.1)
            return
        self.logins += 1
        if b"[CAPABILITY " in status:
            self.literal_plus = b"LITERAL+" in status
        rng = self.rng
        while True:
            for name, probability, again in STATES:
                if time.perf_counter() >= deadline:
                    return
                if name == "LOGOUT" and self.args.no_logout:
                    continue
                if rng.randrange(100) >= probability:
                    continue
                while True:
                    self.current = name
                    getattr(self, "do_" + name.lower())()
                    if name == "LOGOUT":
                        return
                    if not again or rng.randrange(100) >= again:
                        break

    # ------------------------------------------------------------------ the states
    def do_list(self) -> None:
        _, lines = self.command(b'LIST "" *', name="LIST")
        if not any(
            re.match(rb'\* LIST \([^)]*\) (?:"."|NIL) "?INBOX"?\r\n', x, re.I) for x in lines
        ):
            self.error(f"LIST without INBOX: {lines[:3]!r}")

    def do_status(self) -> None:
        _, lines = self.command(b"STATUS INBOX (MESSAGES UNSEEN RECENT)", name="STATUS")
        for x in lines:
            if x.startswith(b"* STATUS "):
                items, _ = parse_list(x, x.rindex(b"("))
                values = dict(zip(items[::2], items[1::2], strict=False))
                if self.exclusive:
                    model = self.model()
                    everything = model + self.pendings[self.account]
                    unseen = sum(1 for m in everything if "\\Seen" not in (m.flags or ()))
                    want = (len(everything), unseen)
                    got = (int(values.get("MESSAGES", -1)), int(values.get("UNSEEN", -1)))
                    if got != want:
                        self.error(f"STATUS MESSAGES/UNSEEN {got}, expected {want}")
                return
        self.error("STATUS without a STATUS response")

    def model(self) -> list[Msg]:
        """Exclusive mode: the account's messages as this client left them (first: the prefill)."""
        if self.account not in self.models:
            prefill = self.args.prefill
            self.models[self.account] = [
                Msg(idx=i % len(self.corpus.messages), flags=frozenset()) for i in range(prefill)
            ]
            self.pendings[self.account] = []
        return self.models[self.account]

    def do_select(self) -> None:
        if self.view is not None:
            return  # imaptest does not SELECT again in the selected state
        self.select_exists = None
        status, lines = self.command(b"SELECT INBOX", name="SELECT")
        if not status.startswith(b"OK"):
            return
        exists = self.select_exists
        if exists is None:
            self.error("SELECT without EXISTS")
            exists = 0
        if self.exclusive:
            model, pending = self.model(), self.pendings[self.account]
            if exists != len(model) + len(pending):
                self.error(
                    f"SELECT: EXISTS {exists}, expected {len(model)} + {len(pending)} appended"
                )
            model.extend(pending)
            pending.clear()
            self.view = model
        else:
            self.view = [Msg() for _ in range(exists)]
        found = _CODE.search(b"".join(x for x in lines if b"[UIDVALIDITY " in x))
        if found and self.exclusive:
            uidvalidity = int(found[2])
            if self.uidvalidity.setdefault(self.account, uidvalidity) != uidvalidity:
                self.error(f"UIDVALIDITY {uidvalidity}, earlier {self.uidvalidity[self.account]}")
        self.keywords_ok = self.permanent_star or bool(self.keywords & set(KEYWORDS))

    def random_seqs(self, count: int) -> list[int]:
        assert self.view is not None
        total = len(self.view)
        return sorted({self.rng.randrange(total) + 1 for _ in range(count)})

    def fetch(self, text: bytes, name: str) -> None:
        self.command(text, name=name)

    def do_fetch(self) -> None:
        view = self.view
        if not view:
            return
        rng = self.rng
        seqs = self.random_seqs(min(len(view), 100))
        items = []
        wanted = []
        for _ in range(rng.randrange(4) + 1):
            if rng.randrange(4):
                item = rng.choice(FETCH_FIELDS)
                items.append(item)
                wanted.append(item)
            else:
                names = " ".join(rng.choice(HEADER_FIELDS) for _ in range(rng.randrange(4) + 1))
                items.append(f"BODY.PEEK[HEADER.FIELDS ({names})]")
                wanted.append(f"BODY[HEADER.FIELDS ({names.upper()})]")
        self.fetch(f"FETCH {seq_set(seqs)} ({' '.join(items)})".encode(), "FETCH")
        self.check_fetched(seqs, wanted)

    def check_fetched(self, seqs: list[int], wanted: list[str]) -> None:
        if not self.exclusive:
            return
        for seq in seqs:
            got = self.fetched.get(seq)
            if got is None:
                self.error(f"no FETCH response for seq {seq}")
                continue
            missing = [w for w in wanted if w.upper() not in got]
            if missing:
                self.error(f"seq {seq}: FETCH response without {missing} (got {sorted(got)})")

    def do_fetch2(self) -> None:
        view = self.view
        if not view:
            return
        seq = self.rng.randrange(len(view)) + 1
        item = self.rng.choice(FETCH2_ITEMS)
        self.fetch(f"FETCH {seq} (UID {item})".encode(), "FETCH2")
        self.check_fetched([seq], ["UID", item.replace(".PEEK", "")])

    def random_flags(self) -> list[str]:
        rng = self.rng
        flags = [f for f in SYSTEM_FLAGS if rng.randrange(2)]
        if self.keywords_ok:
            flags += [k for k in KEYWORDS if not rng.randrange(4)]
        return flags

    def store(self, seqs: list[int], op: str, flags: list[str], silent: bool, name: str) -> None:
        view = self.view
        assert view is not None
        changed = []
        if self.exclusive:
            change = frozenset(flags)
            for seq in seqs:
                msg = view[seq - 1]
                old = msg.flags or frozenset()
                msg.flags = old | change if op == "+" else old - change if op == "-" else change
                if msg.flags != old:
                    changed.append(seq)
        suffix = ".SILENT" if silent else ""
        self.fetch(f"STORE {seq_set(seqs)} {op}FLAGS{suffix} ({' '.join(flags)})".encode(), name)
        if self.exclusive and not silent:
            for seq in changed:  # Dovecot reports only the messages whose flags changed
                if "FLAGS" not in self.fetched.get(seq, {}):
                    self.error(f"STORE did not return FETCH FLAGS for seq {seq}")

    def do_store(self) -> None:
        view = self.view
        if not view:
            return
        msgs = len(view)
        count = self.rng.randrange(msgs if msgs < 10 else min(msgs // 5, 50)) if msgs > 1 else 0
        if count == 0:
            return
        op = self.rng.choice(("+", "-", ""))
        self.store(
            self.random_seqs(count), op, self.random_flags(), bool(self.rng.randrange(2)), "STORE"
        )

    def do_delete(self) -> None:
        view = self.view
        if not view:
            return
        msgs = len(view)
        bound = 1 + (100 + 100 // 2) // 100
        if msgs > THRESHOLD + 5:
            bound += msgs - THRESHOLD
        count = min(self.rng.randrange(bound), 1000)
        if count == 0:
            return
        self.store(
            self.random_seqs(count), "+", ["\\Deleted"], bool(self.rng.randrange(2)), "DELETE"
        )

    def do_expunge(self) -> None:
        if self.view is None:
            return
        self.expunged_now = 0
        before = len(self.view)
        deleted = sum(1 for m in self.view if m.flags and "\\Deleted" in m.flags)
        self.command(b"EXPUNGE", name="EXPUNGE")
        if self.exclusive:
            left = sum(1 for m in self.view if m.flags and "\\Deleted" in m.flags)
            if left or self.expunged_now != deleted:
                self.error(
                    f"EXPUNGE removed {self.expunged_now} of {before} messages, {deleted} had "
                    f"\\Deleted, {left} with \\Deleted remain"
                )

    def do_append(self) -> None:
        view = self.view
        msgs = len(view) if view is not None else 0
        if msgs - (msgs >> 3) >= THRESHOLD:
            return
        rng = self.rng
        idx = rng.randrange(len(self.corpus.messages))
        flags = self.random_flags() if rng.randrange(2) == 0 else []
        date = self.corpus.dates[idx] if rng.randrange(2) else None
        text = b"APPEND INBOX"
        if flags:
            text += f" ({' '.join(flags)})".encode()
        if date is not None:
            text += f' "{imap_date(date)}"'.encode()
        msg = Msg(idx=idx, flags=frozenset(flags), exact=True, date=date)
        if self.exclusive:
            self.model()
            pending = self.pendings[self.account]
            pending.append(msg)  # before the command: its EXISTS comes before the tagged OK
        known = max((m.uid for m in view or () if m.uid), default=0)
        status, _ = self.command(text, self.corpus.messages[idx], name="APPEND")
        if not status.startswith(b"OK"):
            if self.exclusive and msg in pending:
                pending.remove(msg)
            return
        found = re.search(rb"\[APPENDUID (\d+) (\d+)\]", status)
        if found is None:
            self.error(f"APPEND without APPENDUID: {status[:100]!r}")
            return
        uidvalidity, uid = int(found[1]), int(found[2])
        msg.uid = uid
        self.appended[(self.account, uid)] = msg
        if uid <= known:
            self.error(f"APPENDUID {uid} not above UID {known} already seen")
        if self.exclusive and self.uidvalidity.get(self.account, uidvalidity) != uidvalidity:
            self.error(f"APPENDUID validity {uidvalidity}, SELECT said otherwise")

    def do_logout(self) -> None:
        _, lines = self.command(b"LOGOUT", name="LOGOUT")
        if not any(x.startswith(b"* BYE") for x in lines):
            self.error("LOGOUT without BYE")


def _ghost(key: str, value: Any) -> bool:
    """Dovecot's answer for a message that another session expunged: NIL, empty or zero."""
    if value is None or value == b"" or value == "0":
        return True
    if key == "ENVELOPE":
        return isinstance(value, list) and all(v is None for v in value)
    if key in ("BODY", "BODYSTRUCTURE"):
        return isinstance(value, list) and len(value) > 7 and value[6] == "0"
    if key == "INTERNALDATE":
        return isinstance(value, bytes) and b"1970" in value
    return False


def _diff(got: bytes, want: bytes) -> str:
    pairs = zip(got, want, strict=False)
    n = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(got), len(want)))
    start = max(0, n - 20)
    return f"; first difference at byte {n}: {got[start : n + 40]!r} vs {want[start : n + 40]!r}"


def seq_set(seqs: list[int]) -> str:
    out = []
    start = prev = seqs[0]
    for seq in seqs[1:]:
        if seq == prev + 1:
            prev = seq
            continue
        out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = seq
    out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)


# --------------------------------------------------------------------------- client processes
def _client_process(
    server: Server,
    index: int,
    args: Any,
    corpus: Corpus,
    accounts: list[int],
    barrier: Any,
    out: Any,
) -> None:
    client = StressClient(server, index, args, corpus, accounts)
    try:
        barrier.wait()
        client.run(time.perf_counter() + args.duration)
    except BaseException as exc:  # report, never hang the parent
        client.error(f"client crashed: {exc!r}")
    out.put(
        {
            "counts": client.counts,
            "seconds": client.seconds,
            "errors": client.errors,
            "error_texts": client.error_texts,
            "kinds": client.kinds,
            "logins": client.logins,
            "expunge_issued": client.expunge_issued,
        }
    )


def run_clients(server: Server, args: Any, corpus: Corpus) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(args.clients + 1)
    out = ctx.Queue()
    every = list(range(args.accounts))
    procs = []
    for i in range(args.clients):
        own = every if args.shared_effective else every[i :: args.clients]
        procs.append(
            ctx.Process(
                target=_client_process,
                args=(server, i, args, corpus, own, barrier, out),
                daemon=True,
            )
        )
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)
    except Exception as exc:
        for p in procs:
            p.kill()
        raise BenchError(f"clients did not get ready: {exc!r}") from exc
    cpu0 = common.group_cpu_seconds(server.pgid)
    t0 = time.perf_counter()
    results = [out.get(timeout=args.duration + 300) for _ in procs]
    elapsed = time.perf_counter() - t0
    server_cpu = common.group_cpu_seconds(server.pgid) - cpu0
    for p in procs:
        p.join(30)
    counts = {name: sum(r["counts"][name] for r in results) for name in REPORTED}
    seconds = {name: sum(r["seconds"][name] for r in results) for name in REPORTED}
    commands = sum(counts[name] for name in REPORTED if name != "CONNECT")
    return {
        "elapsed": elapsed,
        "commands": commands,
        "cmd_s": commands / elapsed,
        # the server's CPU time per command: steadier than cmd/s on a machine whose cores the
        # clients (and anything else running) share, and what a second core would multiply
        "cpu_ms": server_cpu / commands * 1000 if commands else float("nan"),
        "cpu_share": server_cpu / elapsed,
        "logins_s": sum(r["logins"] for r in results) / elapsed,
        "errors": sum(r["errors"] for r in results),
        "expunge_issued": sum(r["expunge_issued"] for r in results),
        "error_texts": [t for r in results for t in r["error_texts"]],
        "kinds": _merge([r["kinds"] for r in results]),
        "per_s": {name: counts[name] / elapsed for name in REPORTED},
        "mean_ms": {
            name: (seconds[name] / counts[name] * 1000 if counts[name] else float("nan"))
            for name in REPORTED
        },
    }


# --------------------------------------------------------------------------- servers
ADD_USERS = """
import io, sys
from pobox.cli.main import main
config, data, password, *names = sys.argv[1:]
code = main(["--config", config, "--data", data, "init"])  # only init creates a store
if code:
    sys.exit(code)
for name in names:
    sys.stdin = io.StringIO(password + "\\n")
    code = main(["--config", config, "--data", data, "user", "add", name, "--password-stdin"])
    if code:
        sys.exit(code)
"""


def pobox_template(accounts: int, parent: Path) -> Path:
    """A pobox data directory holding the accounts, made once per run and copied for each round
    (``pobox user add`` is one process start and one Argon2 hash per account; here one process
    calls the same command-line entry point for every account)."""
    template = parent / "pobox-template"
    template.mkdir()
    config = template / "pobox.toml"
    config.write_text("")
    python = common.pobox_executable().parent / "python"
    if not python.exists():
        python = Path(sys.executable)
    names = [account_name(i) for i in range(accounts)]
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(python), "-c", ADD_USERS, str(config), str(template / "data"), PASSWORD, *names],
        capture_output=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"creating pobox accounts failed ({done.returncode}):\n"
            f"{(done.stdout + done.stderr).decode(errors='replace')[-2000:]}"
        )
    print(f"pobox: {accounts} accounts created in {time.perf_counter() - t0:.1f} s (once, copied)")
    return template / "data"


def start_pobox(workdir: Path, template: Path, workers: str | None) -> Server:
    exe = common.pobox_executable()
    data = workdir / "data"
    shutil.copytree(template, data)
    ports, listeners = common.listener_config()
    imap, pop3, lmtp = ports["imap"], ports["pop3"], ports["lmtp"]
    config = workdir / "pobox.toml"
    config.write_text(listeners + POBOX_LIMITS)
    command = [str(exe), "--config", str(config), "--data", str(data), "serve"]
    if workers is not None:
        command += ["--workers", str(workers)]
    log_path = workdir / "pobox.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + common.STARTUP_TIMEOUT
    while not all(common.port_open(p) for p in (imap, lmtp)):
        if proc.poll() is not None or time.monotonic() > deadline:
            common._stop_group(proc)
            raise BenchError(f"pobox did not start (log {log_path}):\n{common._tail(log_path)}")
        time.sleep(0.1)
    return Server(
        name="pobox",
        lmtp_port=lmtp,
        pop3_port=pop3,
        imap_port=imap,
        workdir=workdir,
        user=account_name(0),
        password=PASSWORD,
        description=f"{exe} serve{f' --workers {workers}' if workers else ''} "
        "(default config, ports, [limits] lifted)",
        _stop=lambda: common._stop_group(proc),
        pgid=proc.pid,  # started with start_new_session: it leads its own group
    )


def start_dovecot(workdir: Path, accounts: int, clients: int, passwords: str = "plain") -> Server:
    from tools.anchor_dovecot import start_dovecot as anchor

    users = {account_name(i): PASSWORD for i in range(accounts)}
    scheme, cache = {
        "plain": ("PLAIN", False),
        "argon2id": ("ARGON2ID", False),
        "argon2id-cached": ("ARGON2ID", True),
    }[passwords]
    instance = anchor(workdir / "dovecot", users, fsync=True, scheme=scheme, auth_cache=cache)
    server = Server(
        name="dovecot",
        lmtp_port=instance.lmtp_port,
        pop3_port=instance.pop3_port,
        imap_port=instance.imap_port,
        workdir=instance.workdir,
        user=account_name(0),
        password=PASSWORD,
        description=f"Dovecot {common.dovecot_version()}, maildir, mail_fsync=optimized",
        _stop=instance.stop,
        pgid=instance.process.pid if instance.process is not None else None,
    )
    if clients > 40:  # the anchor allows 100 processes per service: one imap process a session
        from imap_bench import raise_dovecot_limits

        raise_dovecot_limits(server, clients * 2)
    return server


@contextlib.contextmanager
def running(target: str, args: Any, template: Path | None) -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix=f"stress-{target}-"))
    try:
        if target == "pobox":
            assert template is not None
            server = start_pobox(workdir, template, args.workers)
        else:
            server = start_dovecot(workdir, args.accounts, args.clients, args.dovecot_passwords)
    except BaseException:
        print(f"  ({target} did not start; its files are kept in {workdir})", file=sys.stderr)
        raise
    try:
        yield server
    finally:
        server.stop()
        if args.keep:
            print(f"  (kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def prefill(server: Server, accounts: int, count: int, corpus: Corpus) -> float:
    """Corpus messages 0..count-1, in that order, into every INBOX over LMTP (up to 50
    recipients per transaction, 4 connections on disjoint accounts). Returns seconds."""
    if count == 0:
        return 0.0
    connections = min(4, accounts)
    groups = [list(range(accounts))[k::connections] for k in range(connections)]
    payloads = [dot_stuff(corpus.messages[i % len(corpus.messages)]) for i in range(count)]
    errors: list[BaseException] = []

    def fill(group: list[int]) -> None:
        try:
            lmtp = LmtpClient(server.host, server.lmtp_port, timeout=300)
            for payload in payloads:
                for k in range(0, len(group), 50):
                    rcpts = [account_name(a) for a in group[k : k + 50]]
                    lmtp.deliver("sender@example.org", rcpts, payload)
            lmtp.close()
        except BaseException as exc:
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=fill, args=(g,), daemon=True) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError(f"prefill over LMTP failed: {errors[0]!r}")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "IMAP stress test")
    parser.add_argument("--clients", type=int, default=10, help="client processes (10)")
    parser.add_argument("--accounts", type=int, default=200, help="accounts (200)")
    parser.add_argument(
        "--shared",
        action="store_true",
        help="every client picks from every account (default only when accounts < clients)",
    )
    parser.add_argument(
        "--no-logout", action="store_true", help="clients stay logged in (no LOGOUT/LOGIN)"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per round (30)")
    parser.add_argument("--prefill", type=int, default=THRESHOLD, help="messages per INBOX (30)")
    parser.add_argument(
        "--workers",
        default=None,
        help="pobox serve --workers N|auto (default: pobox's own default, [server] workers)",
    )
    parser.add_argument(
        "--dovecot-passwords",
        choices=("plain", "argon2id", "argon2id-cached"),
        default="plain",
        help="how Dovecot stores the passwords: plain (no hashing cost, the default), argon2id "
        "(pobox's scheme, verified at every login: Dovecot's auth cache is off by default), or "
        "argon2id-cached (with Dovecot's auth cache on); pobox always uses Argon2id and its "
        "verified-credentials cache",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the clients (1)")
    parser.add_argument("--write-mbox", type=Path, help="write the corpus as an mbox and exit")
    common.add_rounds_option(parser)
    args = parser.parse_args(argv)
    if min(args.clients, args.accounts, args.rounds) < 1 or args.duration <= 0:
        parser.error("--clients, --accounts, --rounds and --duration must be positive")
    if args.workers not in (None, "auto") and not args.workers.isdigit():
        parser.error("--workers takes a number or 'auto'")
    args.shared_effective = args.shared or args.accounts < args.clients

    corpus = build_corpus()
    if args.write_mbox:
        write_mbox(corpus, args.write_mbox)
        print(f"wrote {len(corpus.messages)} messages to {args.write_mbox}")
        return 0
    sizes = sorted(len(m) for m in corpus.messages)
    print(
        f"IMAP stress (imaptest's default mix): {args.clients} clients, {args.accounts} accounts "
        f"({'shared' if args.shared_effective else 'each client its own'}), "
        f"{'no LOGOUT' if args.no_logout else 'LOGOUT after each pass'}, {args.duration:.0f} s; "
        f"{args.prefill} messages per INBOX first (LMTP, not timed); corpus of {len(sizes)} "
        f"messages, {sizes[0]}-{sizes[-1]} bytes, median {sizes[len(sizes) // 2]}"
    )
    print_environment()
    targets = target_list(args.target)
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    failed: set[str] = set()
    parent = Path(tempfile.mkdtemp(prefix="stress-"))
    try:
        template = pobox_template(args.accounts, parent) if "pobox" in targets else None
        for round_ in range(args.rounds):
            for target in targets:
                if target in failed:
                    continue
                try:
                    with running(target, args, template) as server:
                        if round_ == 0:
                            print(f"{target}: {server.description}", flush=True)
                        fill_s = prefill(server, args.accounts, args.prefill, corpus)
                        result = run_clients(server, args, corpus)
                except (BenchError, OSError) as exc:
                    print(f"{target}: FAILED: {exc}", file=sys.stderr)
                    failed.add(target)
                    continue
                results[target].append(result)
                print(
                    f"  round {round_ + 1} {target}: {result['cmd_s']:.0f} cmd/s, "
                    f"{result['logins_s']:.1f} logins/s, {result['errors']} errors, "
                    f"server CPU {result['cpu_ms']:.3f} ms/cmd ({result['cpu_share']:.2f} cores), "
                    f"{result['expunge_issued']} NO [EXPUNGEISSUED] (prefill {fill_s:.1f} s)",
                    flush=True,
                )
                for text in result["error_texts"][:10]:
                    print(f"    {text}")
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    report(results)
    for target, rs in results.items():
        kinds = _merge([r["kinds"] for r in rs])
        if kinds:
            print(f"\n{target}: errors by kind (all rounds)")
            for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
                print(f"  {count:6d}  {kind}")
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    return 1 if failed or errors else 0


def _merge(counters: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            total[key] = total.get(key, 0) + value
    return total


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # without NaN
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    measured = {t: rs for t, rs in results.items() if rs}
    if not measured:
        return
    summary: dict[str, dict[str, float]] = {}
    for target, rs in measured.items():
        row = {
            "cmd_s": _median([r["cmd_s"] for r in rs]),
            "logins_s": _median([r["logins_s"] for r in rs]),
            "errors": float(sum(r["errors"] for r in rs)),
            "cpu_ms": _median([r["cpu_ms"] for r in rs]),
            "cpu_share": _median([r["cpu_share"] for r in rs]),
        }
        for name in REPORTED:
            row[name + "_ms"] = _median([r["mean_ms"][name] for r in rs])
            row[name + "_s"] = _median([r["per_s"][name] for r in rs])
        row["range"] = f"{min(r['cmd_s'] for r in rs):.0f}-{max(r['cmd_s'] for r in rs):.0f}"  # type: ignore[assignment]
        summary[target] = row

    def ratio(key: str) -> str:
        if "pobox" in summary and "dovecot" in summary and summary["dovecot"][key]:
            value = summary["pobox"][key] / summary["dovecot"][key]
            return f"{value:.2f}" if value == value else "-"
        return "-"

    rounds = max(len(rs) for rs in measured.values())
    print(f"\nmedians of {rounds} round(s)")
    rows = [
        [
            t,
            str(len(measured[t])),
            f"{v['cmd_s']:.0f}",
            str(v["range"]) if len(measured[t]) > 1 else "",
            f"{v['logins_s']:.1f}",
            f"{v['errors']:.0f}",
            f"{v['cpu_ms']:.3f}",
            f"{v['cpu_share']:.2f}",
        ]
        for t, v in summary.items()
    ]
    if len(summary) == 2:
        # CPU per command: below 1, pobox spends less of the machine on a command
        rows.append(
            ["ratio p/d", "", ratio("cmd_s"), "", ratio("logins_s"), "", ratio("cpu_ms"), ""]
        )
    print_table(
        ["target", "rounds", "cmd/s", "range", "logins/s", "errors", "CPU ms/cmd", "cores"], rows
    )

    print("\nper command: count per second and mean latency (ms)")
    headers = ["command"]
    for t in summary:
        headers += [f"{t} /s", f"{t} ms"]
    if len(summary) == 2:
        headers.append("ms ratio p/d")
    rows = []
    for name in REPORTED:
        row = [name]
        for v in summary.values():
            row += [f"{v[name + '_s']:.1f}", f"{v[name + '_ms']:.2f}"]
        if len(summary) == 2:
            row.append(ratio(name + "_ms"))
        rows.append(row)
    print_table(headers, rows)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
