"""Importing from a live server: IMAP (every folder, flags, internal dates, UIDs) and POP3 (the
server's UIDLs). The clients are the standard library's imaplib and poplib; they run in worker
threads.

``imap://user@host[:port]`` uses STARTTLS when the server offers it, ``imaps://`` TLS from the
start; likewise ``pop3://`` (STLS) and ``pop3s://``. Certificates are verified unless
*verify_tls* is off (a server with a self-signed certificate).
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import re
import ssl
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from pobox.errors import InvalidInput, Temporary
from pobox.imap import mutf7
from pobox.store.api import DELIMITER
from pobox.transfer.importer import SourceMailbox, SourceMessage

FETCH_BATCH = 100


@dataclass(frozen=True)
class ServerUrl:
    scheme: str
    user: str
    host: str
    port: int

    @property
    def implicit_tls(self) -> bool:
        return self.scheme in ("imaps", "pop3s")


DEFAULT_PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}


def parse_url(url: str) -> ServerUrl:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise InvalidInput(f"{url!r}: use imap://, imaps://, pop3:// or pop3s://USER@HOST[:PORT]")
    if not parts.username or not parts.hostname:
        raise InvalidInput(f"{url!r} names no user or no host (imap://user@host)")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise InvalidInput(f"{url!r} has a bad port") from None
    return ServerUrl(parts.scheme, unquote(parts.username), parts.hostname, port)


def _context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- IMAP -------------------------------------------------------------------------------------

_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.*)$')
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_FETCH_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def _unquote(name: bytes) -> bytes:
    if name.startswith(b'"') and name.endswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", name[1:-1])
    return name


def _internal_date(text: bytes) -> tuple[float, int]:
    when = datetime.strptime(text.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    offset = when.utcoffset()
    return when.timestamp(), int(offset.total_seconds() // 60) if offset else 0


class ImapSource:
    """One IMAP connection, used by one thread at a time (a lock)."""

    def __init__(self, url: ServerUrl, password: str, *, verify_tls: bool = True) -> None:
        self.url = url
        self.lock = threading.Lock()
        try:
            if url.implicit_tls:
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    url.host, url.port, ssl_context=_context(verify_tls), timeout=60
                )
            else:
                self.imap = imaplib.IMAP4(url.host, url.port, timeout=60)
                if "STARTTLS" in self.imap.capabilities:
                    self.imap.starttls(_context(verify_tls))
            self.imap.login(url.user, password)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise _failure("IMAP", url, exc) from None
        self.selected: str | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.imap.logout()

    def folders(self) -> list[tuple[str, str]]:
        """(name on the server, name in pobox) of every selectable folder."""
        status, lines = self.imap.list()
        if status != "OK":
            raise Temporary(f"IMAP LIST failed: {lines!r}")
        out = []
        items: list[Any] = list(lines)  # bytes, a (head, literal) tuple, or None
        for item in items:
            if isinstance(item, tuple):  # a name sent as a literal
                head, literal = item
                line = head.rsplit(b" {", 1)[0] + b' "' + literal.replace(b'"', b'\\"') + b'"'
            elif item is None:
                continue
            else:
                line = item
            match = _LIST.match(line)
            if match is None:
                continue
            if (
                b"\\noselect" in match["flags"].lower()
                or b"\\nonexistent" in match["flags"].lower()
            ):
                continue
            raw = _unquote(match["name"])
            delim = _unquote(match["delim"]).decode() if match["delim"] != b"NIL" else ""
            name = mutf7.decode(raw)
            ours = "INBOX" if name.upper() == "INBOX" else name
            if delim and delim != DELIMITER:
                ours = ours.replace(delim, DELIMITER)
            out.append((raw.decode("ascii", "replace"), ours))
        return out

    def _select(self, raw: str) -> None:
        if self.selected != raw:
            quoted = '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
            status, data = self.imap.select(quoted, readonly=True)
            if status != "OK":
                raise Temporary(f"IMAP EXAMINE {raw} failed: {data!r}")
            self.selected = raw

    def mailbox(self, raw: str, name: str) -> SourceMailbox:
        with self.lock:
            self.selected = None
            self._select(raw)
            uidvalidity = int(self.imap.response("UIDVALIDITY")[1][0] or 0)
            nxt = self.imap.response("UIDNEXT")[1][0]
            uidnext = int(nxt) if nxt else None
            status, data = self.imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
            if status != "OK":
                raise Temporary(f"IMAP FETCH in {raw} failed: {data!r}")
        messages = []
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid = _FETCH_UID.search(line)
            if uid is None:
                continue
            flags = _FETCH_FLAGS.search(line)
            date = _FETCH_DATE.search(line)
            size = _FETCH_SIZE.search(line)
            when, zone = _internal_date(date[1]) if date else (None, 0)
            names = flags[1].decode("utf-8", "replace").split() if flags else []
            messages.append(
                SourceMessage(
                    load=_no_single_load,
                    flags=frozenset(f for f in names if f.lower() != "\\recent"),
                    internal_date=when,
                    internal_tz=zone,
                    uid=int(uid[1]),
                    size=int(size[1]) if size else 0,
                )
            )
        return SourceMailbox(
            name=name,
            messages=messages,
            uidvalidity=uidvalidity or None,
            uidnext=uidnext,
            load_batch=lambda batch: self.bodies(raw, [m.uid or 0 for m in batch]),
        )

    def bodies(self, raw: str, uids: list[int]) -> list[bytes]:
        with self.lock:
            self._select(raw)
            status, data = self.imap.uid("FETCH", ",".join(map(str, uids)), "(UID BODY.PEEK[])")
        if status != "OK":
            raise Temporary(f"IMAP FETCH of messages in {raw} failed: {data!r}")
        found: dict[int, bytes] = {}
        for item in data:
            if isinstance(item, tuple):
                uid = _FETCH_UID.search(item[0])
                if uid is not None:
                    found[int(uid[1])] = item[1]
        missing = [u for u in uids if u not in found]
        if missing:
            raise Temporary(f"messages {missing[:5]} vanished from {raw} on the server")
        return [found[u] for u in uids]


def _no_single_load() -> bytes:
    raise AssertionError("IMAP messages are loaded in batches")


def _text(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return str(exc)
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def _failure(protocol: str, url: ServerUrl, exc: BaseException) -> Exception:
    """A refused certificate or login is the user's to fix (InvalidInput); a connection that
    fails may work later (Temporary)."""
    where = f"{protocol} server {url.host}:{url.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return InvalidInput(
            f"{where}: its certificate does not verify ({exc.verify_message});"
            " --insecure-tls accepts it"
        )
    if isinstance(exc, (imaplib.IMAP4.error, poplib.error_proto)):
        return InvalidInput(f"{where} refused the login of {url.user}: {_text(exc)}")
    return Temporary(f"{where}: {_text(exc)}")


# -- POP3 -------------------------------------------------------------------------------------


class Pop3Source:
    def __init__(self, url: ServerUrl, password: str, *, verify_tls: bool = True) -> None:
        try:
            if url.implicit_tls:
                self.pop: poplib.POP3 = poplib.POP3_SSL(
                    url.host, url.port, context=_context(verify_tls), timeout=60
                )
            else:
                self.pop = poplib.POP3(url.host, url.port, timeout=60)
                with contextlib.suppress(poplib.error_proto):
                    if "STLS" in self.pop.capa():
                        self.pop.stls(_context(verify_tls))
            self.pop.user(url.user)
            self.pop.pass_(password)
        except (OSError, poplib.error_proto) as exc:
            raise _failure("POP3", url, exc) from None
        self.lock = threading.Lock()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pop.quit()  # no DELE was sent: the server keeps everything

    def mailbox(self) -> SourceMailbox:
        _resp, lines, _octets = self.pop.uidl()
        sizes = {}
        _resp, listing, _octets = self.pop.list()
        for line in listing:
            number, _, size = line.decode().partition(" ")
            sizes[int(number)] = int(size or 0)
        messages = []
        for line in lines:
            number, _, uidl = line.decode("utf-8", "replace").partition(" ")
            n = int(number)
            messages.append(
                SourceMessage(load=lambda n=n: self.retr(n), pop3_uidl=uidl, size=sizes.get(n, 0))  # type: ignore[misc]
            )
        return SourceMailbox(name="INBOX", messages=messages)

    def retr(self, number: int) -> bytes:
        with self.lock:
            _resp, lines, _octets = self.pop.retr(number)
        return b"".join(line + b"\r\n" for line in lines)
