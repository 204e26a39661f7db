"""The sans-IO IMAP server connection: bytes in, events out (h11 style).

Feed received bytes with :meth:`ImapServerProtocol.receive_data` (``b""`` when the peer
closed) and call :meth:`~ImapServerProtocol.next_event` until it returns :data:`NEED_DATA`.

Framing rules (RFC 9051 §4.3, RFC 7888, RFC 3516, RFC 6855):

* A command is one line, or several lines joined by literals. A synchronizing literal
  ``{n}`` yields :class:`ContinuationNeeded`; the session answers with :meth:`accept_literal`
  (``+`` bytes to send) or :meth:`reject_literal` (a tagged NO/BAD; the client then sends no
  data and the protocol resynchronises on the next line).
* A non-synchronizing literal ``{n+}`` (LITERAL+ / LITERAL-) over the limit yields
  :class:`LiteralTooBig`; the protocol skips exactly ``n`` octets, discards the rest of the
  command (following further ``{m+}`` literals) and resynchronises.
* APPEND messages are never buffered: each one streams as :class:`AppendStart`,
  :class:`AppendData`\\* and finally :class:`AppendEnd` (or :class:`AppendAborted`,
  :class:`LiteralTooBig`) — MULTIAPPEND and ``UTF8 (~{n+}...)`` included.
* After IDLE, AUTHENTICATE and STARTTLS the protocol pauses until the session calls
  :meth:`enter_idle`, :meth:`enter_authenticate`, :meth:`start_tls` or :meth:`resume`.
* Memory stays bounded by :class:`ImapLimits` whatever the client sends; malformed input only
  ever produces events, never exceptions (API misuse raises :class:`ProtocolUsageError`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import enum
from dataclasses import dataclass

from pobox.imap.append_grammar import (
    AppendEndOfCommand,
    AppendItem,
    AppendMessageInfo,
    AppendPosition,
    CatenateStart,
    CatenateText,
    CatenateUrl,
)
from pobox.imap.commands import Authenticate, Command, Compress, Idle, StartTls
from pobox.imap.grammar import (
    AppendScan,
    CommandError,
    classify_literal,
    command_tag,
    complete_append,
    parse_append_continuation,
    parse_command,
)
from pobox.imap.lexer import LiteralMarker, find_literal_marker
from pobox.imap.responses import Response, ResponseCode, Tagged

__all__ = [
    "NEED_DATA",
    "AppendAborted",
    "AppendData",
    "AppendEnd",
    "AppendStart",
    "AuthenticateResponse",
    "BadCommand",
    "CatenatePart",
    "CommandReceived",
    "ConnectionClosed",
    "ContinuationNeeded",
    "Event",
    "IdleDone",
    "ImapLimits",
    "ImapServerProtocol",
    "LiteralTooBig",
    "NeedData",
    "ProtocolUsageError",
]

LITERAL_MINUS_MAX = 4096  # RFC 7888 §4


@dataclass(frozen=True, slots=True)
class ImapLimits:
    max_line: int = 64 * 1024  # one line of a command, without CRLF
    max_literal: int = 64 * 1024 * 1024  # an APPEND message (APPENDLIMIT)
    max_literal_in_command: int = 64 * 1024  # a literal argument of any other command
    max_command: int = 1024 * 1024  # lines + literals of one non-APPEND command
    literal_minus: bool = False  # LITERAL- advertised instead of LITERAL+
    append_chunk: int = 256 * 1024  # largest AppendData event


class ProtocolUsageError(RuntimeError):
    """The session called the protocol out of turn (a bug in pobox, never the client's)."""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class NeedData:
    pass


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    pass


@dataclass(frozen=True, slots=True)
class CommandReceived:
    command: Command


@dataclass(frozen=True, slots=True)
class BadCommand:
    """Answer ``tag BAD text`` (``* BAD`` when ``tag`` is None)."""

    tag: str | None
    text: str
    code: str | None = None


@dataclass(frozen=True, slots=True)
class ContinuationNeeded:
    """A synchronizing literal argument: call accept_literal() or reject_literal()."""

    tag: str | None
    size: int
    binary: bool


@dataclass(frozen=True, slots=True)
class LiteralTooBig:
    """A literal over ``limit``; the command is dropped (an open APPEND too). Answer
    ``NO [TOOBIG]`` (APPEND) or ``BAD [TOOBIG]``. Nothing to call: a non-synchronizing
    literal is being skipped, a synchronizing one will not be sent."""

    tag: str | None
    size: int
    limit: int
    sync: bool
    append: bool


@dataclass(frozen=True, slots=True)
class AppendStart:
    """One message of APPEND begins; when ``sync``, call accept_literal()/reject_literal()."""

    tag: str
    mailbox: bytes
    flags: tuple[str, ...]
    internal_date: _dt.datetime | None
    size: int
    binary: bool  # literal8 (``~{n}``)
    utf8: bool  # ``UTF8 (~{n})`` of RFC 6855
    sync: bool
    #: REPLACE / UID REPLACE (RFC 8508): the message to replace, digits or "*"
    replace: str | None = None
    uid: bool = False
    #: CATENATE (RFC 4469): no literal follows; the message comes as CatenatePart events
    #: (each TEXT part's octets as AppendData after its part)
    catenate: bool = False

    @property
    def command(self) -> str:
        """The command's name: APPEND, REPLACE or UID REPLACE."""
        if self.replace is None:
            return "APPEND"
        return "UID REPLACE" if self.uid else "REPLACE"


@dataclass(frozen=True, slots=True)
class CatenatePart:
    """One part of a CATENATE message (RFC 4469): a URL, or a TEXT literal of ``size`` octets
    that follows as AppendData (when ``sync``, call accept_literal()/reject_literal())."""

    url: bytes | None = None
    size: int = 0
    binary: bool = False
    sync: bool = False


@dataclass(frozen=True, slots=True)
class AppendData:
    data: bytes


@dataclass(frozen=True, slots=True)
class AppendEnd:
    """The APPEND command is complete: store every message received since its start."""

    tag: str


@dataclass(frozen=True, slots=True)
class AppendAborted:
    """The APPEND turned out malformed after some message data: discard it, answer BAD."""

    tag: str | None
    text: str
    code: str | None = None


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The IDLE ended: ``ok`` if the client sent DONE, otherwise answer BAD."""

    ok: bool


@dataclass(frozen=True, slots=True)
class AuthenticateResponse:
    """One client line of an AUTHENTICATE exchange (base64 text, or ``*`` = cancelled).
    The protocol pauses again until enter_authenticate() or resume()."""

    data: bytes
    cancelled: bool


Event = (
    NeedData
    | ConnectionClosed
    | CommandReceived
    | BadCommand
    | ContinuationNeeded
    | LiteralTooBig
    | AppendStart
    | CatenatePart
    | AppendData
    | AppendEnd
    | AppendAborted
    | IdleDone
    | AuthenticateResponse
)


class _S(enum.Enum):
    LINE = "line"
    LITERAL = "literal"
    APPEND_DATA = "append-data"
    APPEND_NEXT = "append-next"
    SKIP = "skip"
    DISCARD = "discard"
    DECIDE = "decide"
    PAUSED = "paused"
    IDLE = "idle"
    AUTH = "auth"


@dataclass(frozen=True, slots=True)
class _Overflow:
    head: bytes


_TAIL = 40  # enough of a discarded line to see a literal announcement at its end


class ImapServerProtocol:
    """One per connection. See the module documentation for the rules."""

    def __init__(self, limits: ImapLimits | None = None) -> None:
        self.limits = limits or ImapLimits()
        self.utf8 = False  # set by the session after ENABLE UTF8=ACCEPT / IMAP4rev2
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._state = _S.LINE
        self._lines: list[bytes] = []
        self._literals: list[bytes] = []
        self._cmd_size = 0
        self._lit = bytearray()
        self._remaining = 0  # literal / append / skip octets still expected
        self._after_decide = _S.LINE
        self._decide_tag: str | None = None
        self._append: AppendPosition | None = None
        self._queued: list[Event] = []  # events of one line beyond the first (CATENATE)
        self._tail = b""
        self._paused_tag: str | None = None
        self._scan = 0  # buf[pos:scan] is known to hold no LF (no rescans byte by byte)

    # -- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self._eof:
            return
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed."""
        return len(self._buf) - self._pos

    def next_event(self) -> Event:
        if self._queued:
            return self._queued.pop(0)
        if self._state is _S.DECIDE:
            raise ProtocolUsageError("call accept_literal() or reject_literal() first")
        if self._state is _S.PAUSED:
            raise ProtocolUsageError(
                "call enter_idle(), enter_authenticate(), start_tls() or resume() first"
            )
        while True:
            event = self._step()
            if event is not None:
                return event

    # -- session decisions --------------------------------------------------------------

    def accept_literal(self, text: bytes = b"Ready for literal data") -> bytes:
        if self._state is not _S.DECIDE:
            raise ProtocolUsageError("no literal is waiting for a decision")
        self._state = self._after_decide
        return b"+ " + text + b"\r\n"

    def reject_literal(
        self, text: str = "Literal refused", code: str | None = None, status: str = "NO"
    ) -> bytes:
        """Refuse the pending synchronizing literal; returns the tagged response to send."""
        if self._state is not _S.DECIDE:
            raise ProtocolUsageError("no literal is waiting for a decision")
        self._reset_command()
        self._append = None
        self._queued.clear()
        self._state = _S.LINE
        rcode = None if code is None else ResponseCode.plain(code)
        return Tagged(self._decide_tag, status, text, rcode).render(utf8=self.utf8)

    def enter_idle(self, text: bytes = b"idling") -> bytes:
        self._require_paused()
        self._state = _S.IDLE
        return b"+ " + text + b"\r\n"

    def enter_authenticate(self, challenge: bytes = b"") -> bytes:
        """Send a SASL challenge (raw bytes; base64-encoded here) and read one response line."""
        self._require_paused()
        self._state = _S.AUTH
        return b"+ " + base64.b64encode(challenge) + b"\r\n"

    def start_tls(self) -> bool:
        """Call after sending OK to STARTTLS. Drops plaintext pipelined after the command
        (RFC 9051 §6.2.1 / CVE-2011-0411 class) and returns True if there was any."""
        self._require_paused()
        injected = self.buffered > 0
        del self._buf[:]
        self._pos = self._scan = 0
        self._state = _S.LINE
        return injected

    def start_compression(self) -> bool:
        """Call after sending OK to COMPRESS (RFC 4978): what follows is compressed. Drops
        what the client sent after the command before it could have seen the OK (it cannot be
        compressed data) and returns True if there was any."""
        return self.start_tls()

    def resume(self) -> None:
        """Back to reading commands after IDLE/AUTHENTICATE/STARTTLS was refused or finished."""
        self._require_paused()
        self._state = _S.LINE

    def send(self, response: Response) -> bytes:
        return response.render(utf8=self.utf8)

    def _require_paused(self) -> None:
        if self._state is not _S.PAUSED:
            raise ProtocolUsageError("only valid after IDLE, AUTHENTICATE or STARTTLS")

    # -- the state machine --------------------------------------------------------------

    def _need(self) -> Event:
        return ConnectionClosed() if self._eof else NEED_DATA

    def _reset_command(self) -> None:
        self._lines = []
        self._literals = []
        self._cmd_size = 0
        self._lit = bytearray()

    def _command_tag(self, head: bytes = b"") -> str | None:
        line = self._lines[0] if self._lines else head[:256]
        return command_tag(line)

    def _take_line(self) -> bytes | _Overflow | None:
        buf = self._buf
        pos = self._pos
        idx = buf.find(b"\n", max(pos, self._scan))
        limit = self.limits.max_line
        if idx < 0:
            self._scan = len(buf)
            if len(buf) - pos > limit + 1:
                return _Overflow(bytes(buf[pos : pos + 256]))
            return None
        end = idx - 1 if idx > pos and buf[idx - 1] == 0x0D else idx
        if end - pos > limit:
            return _Overflow(bytes(buf[pos : pos + 256]))
        self._pos = idx + 1
        return bytes(buf[pos:end])

    def _discard_after(self, line: bytes) -> None:
        """The command was refused at ``line``: skip a non-synchronizing literal it announces."""
        marker = find_literal_marker(line)
        if marker is not None and not marker.sync:
            self._remaining = marker.size
            self._state = _S.SKIP
        else:
            self._state = _S.LINE

    def _overflowed(self) -> None:
        self._reset_command()
        self._append = None
        self._tail = b""
        self._state = _S.DISCARD

    def _step(self) -> Event | None:
        state = self._state
        if state is _S.LINE:
            return self._step_line()
        if state is _S.LITERAL:
            return self._step_literal()
        if state is _S.APPEND_DATA:
            return self._step_append_data()
        if state is _S.APPEND_NEXT:
            return self._step_append_next()
        if state is _S.SKIP:
            return self._step_skip()
        if state is _S.DISCARD:
            return self._step_discard()
        if state is _S.IDLE:
            return self._step_idle()
        if state is _S.AUTH:
            return self._step_auth()
        raise ProtocolUsageError(f"no events in state {state.value}")  # pragma: no cover

    def _step_line(self) -> Event | None:
        got = self._take_line()
        if got is None:
            return self._need()
        if isinstance(got, _Overflow):
            tag = self._command_tag(got.head)
            self._overflowed()
            return BadCommand(tag, "command line too long", "TOOBIG")
        line = got
        if not self._lines and not line.strip():
            # every line gets an answer: an empty one too (Dovecot: "* BAD ... Invalid tag")
            return BadCommand(None, "empty command line (a command starts with a tag)")
        self._lines.append(line)
        self._cmd_size += len(line)
        if self._cmd_size > self.limits.max_command:
            tag = self._command_tag()
            self._reset_command()
            self._discard_after(line)
            return BadCommand(tag, "command too long", "TOOBIG")
        marker = find_literal_marker(line)
        if marker is None:
            lines, literals = self._lines, self._literals
            self._reset_command()
            try:
                whole = complete_append(lines, literals)  # CATENATE with URLs only
                if whole is not None:
                    return self._append_events(whole)
                command = parse_command(lines, literals)
            except CommandError as exc:
                return BadCommand(exc.tag, exc.text, exc.code)
            if isinstance(command, Idle | Authenticate | StartTls | Compress):
                self._state = _S.PAUSED
                self._paused_tag = command.tag
            return CommandReceived(command)
        try:
            role = classify_literal(self._lines, self._literals)
        except CommandError as exc:
            self._reset_command()
            self._discard_after(line)
            return BadCommand(exc.tag, exc.text, exc.code)
        if isinstance(role, AppendScan):
            self._reset_command()
            return self._append_events(role)
        return self._announce_literal(marker)

    def _literal_limit(self, marker: LiteralMarker, limit: int) -> int:
        if self.limits.literal_minus and not marker.sync:
            return min(limit, LITERAL_MINUS_MAX)
        return limit

    def _too_big(self, tag: str | None, marker: LiteralMarker, limit: int, append: bool) -> Event:
        self._reset_command()
        self._append = None
        if marker.sync:
            self._state = _S.LINE
        else:
            self._remaining = marker.size
            self._state = _S.SKIP
        return LiteralTooBig(tag, marker.size, limit, marker.sync, append)

    def _announce_literal(self, marker: LiteralMarker) -> Event | None:
        tag = self._command_tag()
        limits = self.limits
        room = max(0, limits.max_command - self._cmd_size)
        limit = self._literal_limit(marker, min(limits.max_literal_in_command, room))
        if marker.size > limit:
            return self._too_big(tag, marker, limit, append=False)
        self._cmd_size += marker.size
        self._remaining = marker.size
        self._lit = bytearray()
        if marker.sync:
            self._state = _S.DECIDE
            self._after_decide = _S.LITERAL
            self._decide_tag = tag
            return ContinuationNeeded(tag, marker.size, marker.binary)
        self._state = _S.LITERAL
        return None

    def _append_events(self, scan: AppendScan) -> Event:
        """The events of what an APPEND line held; the last item (a literal, or the end of the
        command) sets the state. The first event is returned, the others queued."""
        events: list[Event] = []
        for item in scan.items:
            event = self._append_event(item, scan.position)
            if event is not None:
                events.append(event)
            if isinstance(event, LiteralTooBig):
                break
        self._queued.extend(events[1:])
        return events[0]

    def _append_event(self, item: AppendItem, position: AppendPosition) -> Event | None:
        context = position.context
        match item:
            case CatenateStart():
                return AppendStart(
                    tag=context.tag,
                    mailbox=context.mailbox,
                    flags=item.flags,
                    internal_date=item.internal_date,
                    size=0,
                    binary=False,
                    utf8=False,
                    sync=False,
                    replace=context.replace,
                    uid=context.uid,
                    catenate=True,
                )
            case CatenateUrl():
                return CatenatePart(url=item.url)
            case CatenateText():
                marker = item.marker
                too_big = self._stream(context.tag, marker, position)
                if too_big is not None:
                    return too_big
                return CatenatePart(size=marker.size, binary=marker.binary, sync=marker.sync)
            case AppendMessageInfo():
                marker = item.marker
                too_big = self._stream(context.tag, marker, position)
                if too_big is not None:
                    return too_big
                return AppendStart(
                    tag=item.tag,
                    mailbox=item.mailbox,
                    flags=item.flags,
                    internal_date=item.internal_date,
                    size=marker.size,
                    binary=marker.binary,
                    utf8=item.utf8,
                    sync=marker.sync,
                    replace=item.replace,
                    uid=item.uid,
                )
            case AppendEndOfCommand():
                self._append = None
                self._state = _S.LINE
                return AppendEnd(context.tag)
        return None  # CatenateEnd: the next message or the end says as much

    def _stream(self, tag: str, marker: LiteralMarker, position: AppendPosition) -> Event | None:
        """Get ready to stream a message or TEXT literal (None), or refuse it (LiteralTooBig)."""
        limit = self._literal_limit(marker, self.limits.max_literal)
        if marker.size > limit:
            return self._too_big(tag, marker, limit, append=True)
        self._append = position
        self._remaining = marker.size
        if marker.sync:
            self._state = _S.DECIDE
            self._after_decide = _S.APPEND_DATA
            self._decide_tag = tag
        else:
            self._state = _S.APPEND_DATA
        return None

    def _consume(self, limit: int) -> bytes:
        n = min(limit, len(self._buf) - self._pos)
        data = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return data

    def _step_literal(self) -> Event | None:
        if self._remaining:
            if self._pos >= len(self._buf):
                return self._need()
            chunk = self._consume(self._remaining)
            self._lit += chunk
            self._remaining -= len(chunk)
            if self._remaining:
                return self._need()
        self._literals.append(bytes(self._lit))
        self._lit = bytearray()
        self._state = _S.LINE
        return None

    def _step_append_data(self) -> Event | None:
        if not self._remaining:
            self._state = _S.APPEND_NEXT
            return None
        if self._pos >= len(self._buf):
            return self._need()
        chunk = self._consume(min(self._remaining, self.limits.append_chunk))
        self._remaining -= len(chunk)
        return AppendData(chunk)

    def _step_append_next(self) -> Event | None:
        position = self._append
        assert position is not None
        tag = position.context.tag
        got = self._take_line()
        if got is None:
            return self._need()
        if isinstance(got, _Overflow):
            self._overflowed()
            return AppendAborted(tag, "command line too long", "TOOBIG")
        try:
            scan = parse_append_continuation(got, position)
        except CommandError as exc:
            self._append = None
            self._discard_after(got)
            return AppendAborted(exc.tag, exc.text, exc.code)
        return self._append_events(scan)

    def _step_skip(self) -> Event | None:
        if self._remaining:
            skipped = min(self._remaining, len(self._buf) - self._pos)
            self._pos += skipped
            self._remaining -= skipped
            if self._remaining:
                return self._need()
        self._tail = b""
        self._state = _S.DISCARD
        return None

    def _step_discard(self) -> Event | None:
        buf = self._buf
        idx = buf.find(b"\n", self._pos)
        if idx < 0:
            self._tail = (self._tail + bytes(buf[max(self._pos, len(buf) - _TAIL) :]))[-_TAIL:]
            self._pos = len(buf)
            return self._need()
        tail = (self._tail + bytes(buf[max(self._pos, idx - _TAIL) : idx]))[-_TAIL:]
        self._pos = idx + 1
        self._tail = b""
        if tail.endswith(b"\r"):
            tail = tail[:-1]
        self._discard_after(tail)
        return None

    def _step_idle(self) -> Event | None:
        got = self._take_line()
        if got is None:
            return self._need()
        if isinstance(got, _Overflow):
            self._overflowed()
            return IdleDone(ok=False)
        if got.rstrip(b" ").upper() == b"DONE":
            self._state = _S.LINE
            return IdleDone(ok=True)
        self._discard_after(got)
        return IdleDone(ok=False)

    def _step_auth(self) -> Event | None:
        got = self._take_line()
        if got is None:
            return self._need()
        if isinstance(got, _Overflow):
            self._overflowed()
            return BadCommand(self._paused_tag, "authentication line too long", "TOOBIG")
        self._state = _S.PAUSED
        return AuthenticateResponse(got, cancelled=got.strip() == b"*")
