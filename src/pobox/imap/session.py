"""The IMAP session: the state machine between the sans-IO protocol and the mail service.

One :class:`ImapSession` per connection. It reads bytes, feeds :class:`ImapServerProtocol`,
and dispatches each event: commands go to the handler registered for their type in
:data:`pobox.imap.handlers.COMMANDS` (which also says in which states a command is legal and
whether expunges may be announced after it). Handlers talk only to :mod:`pobox.service`.

States (RFC 9051 §3): not authenticated → authenticated → selected → logout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pobox import metrics
from pobox.config import Config
from pobox.errors import (
    AlreadyExists,
    Expunged,
    InUse,
    InvalidInput,
    NoPermission,
    NotAllowed,
    NotFound,
    OverQuota,
    PoboxError,
    Temporary,
    TooBig,
)
from pobox.imap import capabilities as caps
from pobox.imap import responses as r
from pobox.imap.commands import Command
from pobox.imap.compress import CompressionError, DeflateStreams
from pobox.imap.fetch import format_flags
from pobox.imap.protocol import (
    AppendAborted,
    AppendData,
    AppendEnd,
    AppendStart,
    AuthenticateResponse,
    BadCommand,
    CatenatePart,
    CommandReceived,
    ConnectionClosed,
    ContinuationNeeded,
    IdleDone,
    ImapLimits,
    ImapServerProtocol,
    LiteralTooBig,
    NeedData,
    ProtocolUsageError,
)
from pobox.imap.recent import RecentUids
from pobox.imap.sequences import SequenceSet, SequenceSetError
from pobox.log import log_event
from pobox.net.limits import CommandPacer, SlotLimiter, close_stream, peer_ip
from pobox.net.tls import (
    TlsManager,
    is_loopback,
    is_tls,
    prepare_upgrade,
    resume_reading,
    upgrade,
)
from pobox.service.acl import Access
from pobox.service.auth import Authenticated, login_fact
from pobox.service.mail import MailService
from pobox.service.view import MailboxView
from pobox.store.api import SYSTEM_FLAGS, Account, MailboxId, MessageMeta, Uid

log = logging.getLogger("pobox.imap")

READ_SIZE = 256 * 1024
#: Octets of queued output that are handed to the transport without waiting for a drain.
OUTPUT_BUFFER = 256 * 1024


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset(State) - {State.LOGOUT}
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})


class CommandError(Exception):
    """A handler's way to end a command with NO/BAD and a response code."""

    def __init__(self, text: str, code: str | None = None, status: str = "NO") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status


class Disconnect(Exception):
    """Close the connection after the responses already sent."""


@dataclass
class Selected:
    """The selected state: the session's numbered view of one mailbox."""

    view: MailboxView
    read_only: bool
    #: the messages this session holds as \Recent: runs of UIDs, bounded memory whatever
    #: the mailbox's size (pobox.imap.recent)
    recent: RecentUids = field(default_factory=RecentUids)
    #: UIDs first..below-1 claimed as \Recent by this session's own APPEND (in the append's
    #: transaction), made recent here when the next announcement shows them
    claimed: tuple[int, int] | None = None
    saved: list[Uid] | None = None  # SEARCHRES: the result of the last SEARCH RETURN (SAVE)
    #: the keywords the client was told of in FLAGS (at SELECT, and since)
    keywords: list[str] = field(default_factory=list)
    #: the rights this session has on the mailbox, fixed at SELECT (RFC 4314 §5.1.1 allows
    #: that); None: the account's own mailbox, every right
    access: Access | None = None
    #: searches kept up to date, by tag (RFC 5267: pobox.imap.handlers.context)
    contexts: dict[str, Any] = field(default_factory=dict)

    def may(self, right: str) -> bool:
        return self.access is None or self.access.has(right)

    def require(self, rights: str) -> None:
        if self.access is not None:
            self.access.require(rights)

    @property
    def mailbox_id(self) -> MailboxId:
        return self.view.mailbox.id


Handler = Callable[["ImapSession", Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    handler: Handler
    states: frozenset[State]
    # RFC 9051 §7.5.1: no EXPUNGE while responding to FETCH, STORE or SEARCH by message number
    expunge_after: bool = True


def error_code(exc: PoboxError) -> tuple[str, str | None]:
    """The one mapping from service errors to IMAP NO responses."""
    text = str(exc) or type(exc).__name__
    match exc:
        case NotFound():
            return text, "NONEXISTENT"
        case AlreadyExists():
            return text, "ALREADYEXISTS"
        case NotAllowed():
            return text, "CANNOT"
        case NoPermission():
            return text, "NOPERM"
        case InUse():
            return text, "INUSE"
        case TooBig():
            return text, "TOOBIG"
        case OverQuota():
            return text, "OVERQUOTA"
        case Expunged():
            return text, "EXPUNGEISSUED"
        case Temporary():
            return text, "UNAVAILABLE"
        case InvalidInput():
            return text, "CANNOT"
    return text, "SERVERBUG"


class ImapSession:
    def __init__(
        self,
        service: MailService,
        config: Config,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls: TlsManager | None = None,
    ) -> None:
        self.service = service
        self.config = config
        self.reader = reader
        self.writer = writer
        #: where STARTTLS gets its context (None: TLS is not configured)
        self.tls_manager = tls
        self.tls = is_tls(writer)  # implicit TLS, or after STARTTLS
        self.protocol = ImapServerProtocol(
            ImapLimits(max_line=config.imap.max_line, max_literal=config.imap.max_literal)
        )
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        #: how it logged in: the app password's label and revocation flag (docs/app-passwords.md)
        self.credential: Authenticated | None = None
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self.peer = str(writer.get_extra_info("peername"))
        self.remote_ip = peer_ip(writer.get_extra_info("peername"))
        self.pacer = CommandPacer(config.limits.commands_per_second)
        #: concurrent sessions per account (set by make_handler; None: unlimited)
        self.account_slots: SlotLimiter | None = None
        self.holds_slot = False
        self.bad_commands = 0
        self.commands = 0
        self.idle_tag: str | None = None
        self.auth_exchange: Any = None
        self.auth_tag: str | None = None
        self.auth_failures = 0
        self.append: Any = None  # the APPEND in progress (pobox.imap.handlers.append)
        #: NOTIFY SET in force (pobox.imap.handlers.notify.NotifyState), RFC 5465
        self.notify: Any = None
        self.wake = asyncio.Event()
        self._read_task: asyncio.Task[bytes] | None = None
        #: COMPRESS=DEFLATE once the client asked for it (RFC 4978)
        self.compression: DeflateStreams | None = None
        self.started = time.monotonic()
        self._output: list[bytes] = []  # queued for the client (send_raw, flush, drain)
        self._output_size = 0
        #: when the client last completed something (a command, a piece of a literal, DONE)
        self.last_progress = self.started
        #: the command awaiting its tagged response, for the metrics: tag, name, start
        self._running: tuple[str, str, float] | None = None
        #: for the session's log line: octets read and written, and how it ended
        self.octets_in = 0
        self.octets_out = 0
        self.end = ""
        #: set when the server shuts down (pobox.net.drain): BYE before the next command
        self._stopping = False
        self._stop: asyncio.Future[None] | None = None
        self._task: asyncio.Task[Any] | None = None
        #: waiting for a command by a plain read (``_read_direct``), and whether a shutdown or
        #: revocation cancelled that read to be seen at once
        self._direct_reading = False
        self._interrupted = False

    # -- state helpers ----------------------------------------------------------------------
    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    #: a VANISHED was sent since the last tagged response (see :meth:`tagged`)
    _vanished = False

    @property
    def condstore(self) -> bool:
        """RFC 7162 CONDSTORE is on (ENABLE, or the first command that uses it: §3.1)."""
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command (RFC 7162 §3.1): from now on FETCH responses carry UID
        and MODSEQ; with a mailbox selected, the client learns its HIGHESTMODSEQ at once."""
        if self.condstore:
            return
        self.enabled.add("CONDSTORE")
        if self.selected is not None:
            code = r.ResponseCode.number("HIGHESTMODSEQ", self.selected.view.modseq)
            self.send(r.Untagged("OK", "highest", code))

    @property
    def secure(self) -> bool:
        """TLS, or a client on a loopback address: a password may cross this connection."""
        return self.tls or is_loopback(self.remote_ip)

    @property
    def plaintext_auth_allowed(self) -> bool:
        return self.secure or self.config.tls.allow_plaintext_auth

    def capabilities(self) -> tuple[str, ...]:
        return caps.capabilities(
            authenticated=self.state in AUTH,
            append_limit=self.config.imap.max_literal,
            starttls=self.tls_manager is not None and not self.tls,
            login_disabled=not self.plaintext_auth_allowed,
        )

    async def start_tls(self, tag: str) -> None:
        """Answer STARTTLS with OK and run the handshake. Plaintext the client pipelined after
        the command is dropped, never executed (RFC 9051 §6.2.1)."""
        assert self.tls_manager is not None
        dropped = prepare_upgrade(self.reader, self.writer)
        self.tagged(tag, "OK", "begin TLS negotiation now")
        await self.drain()
        if self.protocol.start_tls() or dropped:
            log.warning("%s sent data after STARTTLS; discarded", self.peer)
        await upgrade(self.writer, self.tls_manager.context)
        self.tls = True

    def require_selected(self) -> Selected:
        if self.selected is None:
            raise CommandError("no mailbox selected", status="BAD")
        return self.selected

    def require_account(self) -> Account:
        if self.account is None:
            raise CommandError("not authenticated", status="BAD")
        return self.account

    # -- output -----------------------------------------------------------------------------
    def send(self, response: r.Response) -> None:
        if type(response) is r.Tagged:
            self._answered(response)
        self.send_raw(self.protocol.send(response))

    def _begin(self, tag: str, name: str) -> None:
        """A command starts (for the metrics; its tagged response ends it)."""
        running = self._running
        if running is None or running[0] != tag or name != "APPEND":  # MULTIAPPEND: once
            self._running = (tag, name, time.perf_counter())

    def _answered(self, response: r.Tagged) -> None:
        running = self._running
        if running is not None and running[0] == response.tag:
            self._running = None
            name = running[1]
            # IDLE lasts as long as the client wants: not a latency
            seconds = None if name == "IDLE" else time.perf_counter() - running[2]
            metrics.command("imap", name, response.status, seconds)
        else:  # a command that could not be parsed
            metrics.command("imap", metrics.INVALID, response.status, None)

    def send_raw(self, data: bytes) -> None:
        """Queue *data* for the client. Output is collected and written in one piece at the
        next :meth:`drain` (or once :data:`OUTPUT_BUFFER` octets are waiting): a write per
        response line would be a system call and, with TCP_NODELAY, a packet each."""
        if self.writer.transport.is_closing():
            # the client has gone (uvloop raises on a write to a closed transport; asyncio
            # would only log a warning per write): end the command as a lost connection
            raise ConnectionResetError("the client closed the connection")
        self._output.append(data)
        self._output_size += len(data)
        if self._output_size >= OUTPUT_BUFFER:
            self.flush()

    def flush(self) -> None:
        """Hand what is queued to the transport (without waiting for the client)."""
        if self._output:
            data = self._output[0] if len(self._output) == 1 else b"".join(self._output)
            self._output.clear()
            self._output_size = 0
            if not self.writer.transport.is_closing():
                if self.compression is not None:
                    data = self.compression.outgoing(data)
                self.octets_out += len(data)
                self.writer.write(data)

    def tagged(self, tag: str, status: str, text: str, code: r.ResponseCode | None = None) -> None:
        if self._vanished:
            # RFC 7162 §3.2.10: VANISHED carries no MODSEQ; the tagged OK of the command that
            # sent it tells the client the mailbox's new HIGHESTMODSEQ (as Dovecot does)
            self._vanished = False
            if status == "OK" and code is None and self.selected is not None:
                code = r.ResponseCode.number("HIGHESTMODSEQ", self.selected.view.modseq)
        self.send(r.Tagged(tag, status, text, code))

    async def drain(self) -> None:
        """Wait until the client takes what was written, but not longer than the idle timeout:
        a client that stops reading must not hold its connection slot for ever."""
        self.flush()
        transport = self.writer.transport
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            return  # the kernel took it all: nothing to wait for (and no task to make)
        await asyncio.wait_for(self.writer.drain(), self.config.imap.idle_timeout)

    # -- change notification ----------------------------------------------------------------
    def _on_change(self) -> None:
        self.wake.set()

    async def select(self, selected: Selected | None) -> None:
        previous, self.selected = self.selected, selected
        if previous is not None and previous is not selected:
            previous.view.on_change = None
            previous.view.close()
        self.state = State.SELECTED if selected is not None else State.AUTHENTICATED
        self.wake.clear()
        if selected is not None:
            selected.view.on_change = self._on_change

    async def announce_updates(self, *, expunge: bool = True) -> None:
        """Tell the client what changed (:meth:`_announce_view`), then what that changed in
        the searches it asked to keep up to date (RFC 5267 CONTEXT), and, under NOTIFY, the
        new messages' fetch attributes and what changed elsewhere (RFC 5465)."""
        last_uid = self.selected.view.last_uid() if self.selected is not None else 0
        await self._announce_view(expunge=expunge)
        if self.selected is not None and self.selected.contexts:
            from pobox.imap.handlers.context import refresh

            await refresh(self)
        if self.notify is not None:
            from pobox.imap.handlers.notify import after_announce

            await after_announce(self, last_uid)

    async def _announce_view(self, *, expunge: bool = True) -> None:
        """Tell the client what others changed (RFC 9051 §7): EXPUNGE, EXISTS, FETCH FLAGS.

        Nothing changed (the usual case) costs no store call: the view compares versions with
        the process's shared index."""
        selected = self.selected
        if selected is None:
            return
        self.wake.clear()
        view = selected.view
        if not view.changed():
            return
        before = len(view)
        try:
            update = await view.refresh(expunge=expunge)
        except NotFound:
            # another session deleted the selected mailbox: there is nothing left to show
            # (Dovecot does the same: it ends the session)
            self.send(r.bye("the selected mailbox was deleted", r.ResponseCode.plain("CLOSED")))
            await self.drain()
            raise Disconnect from None
        if not update:
            return
        self.send_expunged(list(zip(update.expunged, update.vanished, strict=True)))
        if update.exists is not None:
            arrived = view.slice(before - len(update.expunged) + 1, len(view))
            if not selected.read_only and arrived:
                # \Recent if no other session saw them first (RFC 3501 §2.3.2); the arrivals
                # are the view's UIDs from arrived[0] to arrived[-1], so each claim is a range
                end = arrived[-1] + 1
                first = await self.service.index.claim_recent(view.index, end)
                selected.recent.add_range(max(first, arrived[0]), end)
                if selected.claimed is not None:  # what this session's APPEND claimed
                    low, below = selected.claimed
                    selected.recent.add_range(max(low, arrived[0]), min(below, end))
                    selected.claimed = None
            self.send(r.exists(update.exists))
            if not self.rev2:
                self.send(r.recent(self.recent_count()))
        for msn, meta in update.flags:
            self.send(r.FetchResponse(msn, self.flag_items(meta)))

    def send_expunged(self, gone: list[tuple[int, int]]) -> None:
        """Announce expunged messages, given as (number, UID) in the order the numbers are
        valid: EXPUNGE per message, or under QRESYNC one VANISHED (RFC 7162 §3.2.10)."""
        if not gone:
            return
        if self.selected is not None and self.selected.contexts:
            from pobox.imap.handlers.context import before_expunge

            before_expunge(self, gone)  # RFC 5267: REMOVEFROM while the numbers are valid
        if self.qresync:
            self.send(r.VanishedResponse(tuple(sorted(uid for _, uid in gone))))
            self._vanished = True
            return
        for msn, _ in gone:
            self.send(r.expunge(msn))

    def flag_items(
        self, meta: MessageMeta, *, uid: bool = False, flags: bool = True
    ) -> tuple[tuple[bytes, bytes], ...]:
        """A FETCH response's items for a flag change: FLAGS (unless *flags* is False), with
        UID first when asked for or under QRESYNC, and MODSEQ last under CONDSTORE (RFC 7162
        §3.1: every FETCH response a flag change causes carries it)."""
        items: list[tuple[bytes, bytes]] = []
        if uid or self.qresync:
            items.append((b"UID", b"%d" % meta.uid))
        if flags:
            items.append((b"FLAGS", self.flags_of(meta)))
        if self.condstore:
            items.append((b"MODSEQ", b"(%d)" % meta.modseq))
        return tuple(items)

    def recent_count(self) -> int:
        selected = self.selected
        if selected is None:
            return 0
        return selected.recent.count(selected.view.count_between)

    def flags_of(self, meta: MessageMeta) -> bytes:
        """A message's FLAGS as FETCH renders them (one order everywhere: Dovecot's)."""
        recent = not self.rev2 and self.selected is not None and meta.uid in self.selected.recent
        self.note_flags(meta.flags)
        return format_flags(meta.flags, recent)

    def note_flags(self, flags: frozenset[str]) -> None:
        """Call before a response shows *flags*: a keyword the client has not been told of
        (another session, or this one's STORE or APPEND, made it) is announced first with
        ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` (RFC 9051 §7.3.5: the client records the
        mailbox's flags from the latest FLAGS response)."""
        selected = self.selected
        if selected is None:
            return
        known = selected.keywords
        new = [f for f in flags if not f.startswith("\\") and f not in known]
        if not new:
            return
        known.extend(sorted(new))
        flag_list = (*SYSTEM_FLAGS, *known)
        self.send(r.Flags(flag_list))
        permanent = () if selected.read_only else (*flag_list, "\\*")
        self.send(r.Untagged("OK", "flags permitted", r.ResponseCode.permanentflags(permanent)))

    # -- message sets -----------------------------------------------------------------------
    def resolve(self, sequence_set: SequenceSet, *, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending (`$` = saved SEARCH result)."""
        selected = self.require_selected()
        view = selected.view
        if sequence_set.saved:
            return [u for u in sorted(set(selected.saved or ())) if view.msn_of(u) is not None]
        if not len(view):
            if not uid and not _only_star(sequence_set):
                raise CommandError(
                    "invalid message sequence number (mailbox is empty)", status="BAD"
                )
            return []
        if uid:
            try:
                ranges = sequence_set.resolve(view.last_uid())
            except SequenceSetError as exc:
                raise CommandError(str(exc), status="BAD") from None
            return _in_ranges(view, ranges)
        count = len(view)
        try:
            bad = any(
                (b is not None and b > count) or (a is not None and a > count)
                for a, b in sequence_set.ranges
            )
            ranges = sequence_set.resolve(count)
        except SequenceSetError as exc:
            raise CommandError(str(exc), status="BAD") from None
        if bad:
            raise CommandError("invalid message sequence number", status="BAD")
        out: list[int] = []
        for first, last in ranges:
            out.extend(view.slice(first, last))
        return out

    def mailbox_name(self, raw: bytes, *, code: str = "NONEXISTENT") -> str:
        """The name a command gives. One that is not valid modified UTF-7 (or UTF-8) is
        well-formed IMAP but names no mailbox: ``NO [code]`` (NONEXISTENT where a mailbox is
        looked up, CANNOT where one would be made), as Dovecot answers NO."""
        from pobox.imap.grammar import decode_mailbox

        try:
            name = decode_mailbox(raw, utf8=self.utf8)
        except ValueError:
            raise CommandError("mailbox name is not valid modified UTF-7 or UTF-8", code) from None
        if name.upper() == "INBOX":
            return "INBOX"
        return name

    # -- the connection ---------------------------------------------------------------------
    def stopping(self) -> bool:
        """True once the server shuts down (a call: it changes behind the session's back)."""
        return self._stopping

    def on_revoked(self) -> None:
        """The app password of this session was deleted (docs/app-passwords.md): a session
        waiting for a command, in IDLE or not, is told BYE now; one at work, when it is done."""
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)
        self._interrupt()

    def _on_shutdown(self, force: bool) -> None:
        """The server is shutting down: BYE at the next wait for a command (now if the session
        is waiting), or, with *force*, at once."""
        self._stopping = True
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)
        self._interrupt()
        if force and self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        self.service.drain.register(self, self._on_shutdown)
        try:
            self.send(
                r.Untagged(
                    "OK",
                    "pobox IMAP ready",
                    r.ResponseCode.capability(self.capabilities()),
                )
            )
            await self.drain()
            while self.state is not State.LOGOUT:
                data = await self._next_input()
                if data is None:
                    break
                if not data:
                    self.end = "eof"
                self.octets_in += len(data)
                self.protocol.receive_data(data)
                await self._process_events()
                await self.drain()
                if not data:
                    break
        except Disconnect:
            self.end = self.end or "disconnect"
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            # the client went away (after LOGOUT, or not), or stopped reading
            self.end = self.end or ("logout" if self.state is State.LOGOUT else "eof")
        except asyncio.CancelledError:
            self.end = "shutdown"
            raise
        except Exception:
            self.end = "error"
            log.exception("IMAP session from %s failed", self.peer)
            with contextlib.suppress(Exception):
                self.send(r.bye("internal server error", r.ResponseCode.plain("SERVERBUG")))
                await self.drain()
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        if not self.end:
            self.end = "logout" if self.state is State.LOGOUT else "eof"
        if self.selected is not None:
            await self.select(None)
        if self.notify is not None:
            from pobox.imap.handlers.notify import close

            close(self)
        if self.holds_slot and self.account_slots is not None and self.account is not None:
            self.account_slots.release(self.account.id)
            self.holds_slot = False
        if self.account is not None:
            metrics.session_closed("imap")
        if self.append is not None:
            with contextlib.suppress(Exception):
                await self.append.abort()
        if self._read_task is not None:
            self._read_task.cancel()
        with contextlib.suppress(Exception):
            self.flush()
        await close_stream(self.writer)
        self.service.drain.unregister(self)
        log_event(
            log,
            "session",
            proto="imap",
            user=self.account.address if self.account else "",
            **login_fact(self.credential),
            ip=self.remote_ip,
            tls=self.tls,
            duration=time.monotonic() - self.started,
            commands=self.commands,
            **{"in": self.octets_in, "out": self.octets_out},
            end=self.end,
        )

    def _interrupt(self) -> None:
        """Wake a session waiting in :meth:`_read_direct` (its checks run again at once)."""
        if self._direct_reading and not self._interrupted and self._task is not None:
            self._interrupted = True
            self._task.cancel()

    async def _read_direct(self, remaining: float) -> bytes | None:
        """The next bytes from the client, awaited in this task under a timeout: what almost
        every wait for a command is (no IDLE, NOTIFY or read left pending). A task for the read
        and ``asyncio.wait`` over it and the stop future cost about 20-30 µs a command more.
        None when :meth:`_interrupt` ended the wait; TimeoutError when the time is up."""
        self._direct_reading = True
        try:
            async with asyncio.timeout(remaining):
                return await self.reader.read(READ_SIZE)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._interrupted or task is None or task.uncancel() > 0:
                raise
            return None
        finally:
            self._direct_reading = False
            self._interrupted = False

    async def _next_input(self) -> bytes | None:
        """The next bytes from the client; while idling, also wake up for mailbox changes."""
        # the idle timeout runs from the last complete command (or piece of a literal), so a
        # client that sends a byte now and then is timed out as one that sends nothing
        deadline = self.last_progress + float(self.config.imap.idle_timeout)
        while True:
            if self.stopping():
                # RFC 9051 §7.1.5: BYE when the server is shutting down
                self.end = "shutdown"
                self.send(r.bye("Server shutting down"))
                await self.drain()
                return None
            if self.credential is not None and self.credential.revoked:
                self.end = "revoked"
                self.send(r.bye("this app password was revoked", r.ResponseCode.plain("EXPIRED")))
                await self.drain()
                return None
            if self._stop is None:
                self._stop = asyncio.get_running_loop().create_future()
            if self.compression is not None and self.compression.pending:
                held = self._inflated(b"")
                if held:
                    return held
            direct = (
                self._read_task is None
                and self.idle_tag is None
                and self.notify is None
                and self.compression is None
            )
            if direct:
                try:
                    data = await self._read_direct(max(deadline - time.monotonic(), 0))
                except TimeoutError:
                    data = None
                    if not (self.stopping() or self._revoked()):
                        await self._autologout()
                        return None
                if data is None:
                    continue  # stopped or revoked: said at the top of the loop
                return data
            if self._read_task is None:
                self._read_task = asyncio.ensure_future(self.reader.read(READ_SIZE))
            waiters: set[asyncio.Future[Any]] = {self._read_task, self._stop}
            wake_task: asyncio.Task[Any] | None = None
            if self.idle_tag is not None or self.notify is not None:
                wake_task = asyncio.ensure_future(self.wake.wait())
                waiters.add(wake_task)
            remaining = deadline - time.monotonic()
            done, _ = await asyncio.wait(
                waiters, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED
            )
            if wake_task is not None and not wake_task.done():
                wake_task.cancel()
            if self._read_task in done:
                task, self._read_task = self._read_task, None
                data = task.result()
                if self.compression is not None and data:
                    data = self._inflated(data)
                    if not data:
                        continue  # the middle of a compressed block: read on
                return data
            if wake_task is not None and wake_task in done:
                if self.idle_tag is None and self.notify is not None:
                    from pobox.imap.handlers.notify import on_wake

                    await on_wake(self)  # RFC 5465: no need to wait for a command
                else:
                    await self.announce_updates()
                await self.drain()
                continue
            if self.stopping() or self._revoked():
                continue
            await self._autologout()
            return None

    def _revoked(self) -> bool:
        return self.credential is not None and self.credential.revoked

    async def _autologout(self) -> None:
        """Inactivity: RFC 9051 §5.4 allows an autologout after at least 30 minutes."""
        self.end = "timeout"
        self.send(r.bye("autologout; idle for too long"))
        await self.drain()

    def _inflated(self, data: bytes) -> bytes:
        assert self.compression is not None
        try:
            return self.compression.incoming(data)
        except CompressionError as exc:
            log.warning("%s sent a corrupt compressed stream: %s", self.peer, exc)
            self.end = "compression error"
            raise Disconnect from None

    async def start_compression(self, tag: str) -> None:
        """Answer COMPRESS with OK, in plain; everything after it is compressed both ways.
        What the client sent after the command, before it could have seen the OK, is dropped
        (as after STARTTLS)."""
        dropped = prepare_upgrade(self.reader, self.writer)
        self.tagged(tag, "OK", "DEFLATE active")
        await self.drain()
        if self.protocol.start_compression() or dropped:
            log.warning("%s sent data after COMPRESS before its answer; discarded", self.peer)
        self.compression = DeflateStreams(READ_SIZE)
        resume_reading(self.writer)

    async def _process_events(self) -> None:
        while True:
            event = self.protocol.next_event()
            match event:
                case NeedData():
                    return
                case ConnectionClosed():
                    self.state = State.LOGOUT
                    return
                case CommandReceived(command=command):
                    self.bad_commands = 0
                    await self._dispatch(command)
                case BadCommand(tag=tag, text=text, code=code):
                    await self._bad(tag, text, code)
                case ContinuationNeeded():
                    self.send_raw(self.protocol.accept_literal())
                case LiteralTooBig(tag=tag, append=append, limit=limit):
                    if append and self.append is not None:
                        await self.append.abort()
                        self.append = None
                    toobig = r.ResponseCode.plain("TOOBIG")
                    status = "NO" if append else "BAD"
                    self.send(r.Tagged(tag, status, f"literal larger than {limit} octets", toobig))
                case AppendStart() | CatenatePart() | AppendData() | AppendEnd() | AppendAborted():
                    from pobox.imap.handlers.append import append_event

                    if isinstance(event, AppendStart):
                        self._begin(event.tag, event.command)
                    await append_event(self, event)
                case IdleDone(ok=ok):
                    tag, self.idle_tag = self.idle_tag, None
                    if tag is not None:
                        if ok:
                            await self.announce_updates()
                            self.tagged(tag, "OK", "IDLE terminated")
                        else:
                            self.tagged(tag, "BAD", "expected DONE")
                case AuthenticateResponse():
                    from pobox.imap.handlers.auth import authenticate_step

                    await authenticate_step(self, event)
            await self.drain()
            self.last_progress = time.monotonic()

    def _unpause(self) -> None:
        """After IDLE/AUTHENTICATE/STARTTLS the protocol waits for a decision; a refusal resumes."""
        with contextlib.suppress(ProtocolUsageError):
            self.protocol.resume()

    async def _bad(self, tag: str | None, text: str, code: str | None) -> None:
        self.bad_commands += 1
        rcode = r.ResponseCode.plain(code) if code else None
        self.send(r.Tagged(tag, "BAD", text, rcode))
        if self.bad_commands >= self.config.imap.max_bad_commands:
            self.send(r.bye("too many bad commands"))
            await self.drain()
            raise Disconnect

    async def _dispatch(self, command: Command) -> None:
        from pobox.imap.handlers import COMMANDS

        self.commands += 1
        if self.credential is not None and self.credential.revoked:
            # its app password was deleted: the session ends here (docs/app-passwords.md)
            self.end = "revoked"
            self.send(r.bye("this app password was revoked", r.ResponseCode.plain("EXPIRED")))
            await self.drain()
            raise Disconnect
        self._begin(
            command.tag, "UID " + command.NAME if getattr(command, "uid", False) else command.NAME
        )
        await self.pacer.pace()  # over the command rate: slowed down, never dropped
        spec = COMMANDS.get(type(command))
        if spec is None:
            self._unpause()
            await self._bad(command.tag, f"{command.NAME} is not supported", None)
            return
        if self.state not in spec.states:
            self._unpause()
            await self._bad(command.tag, f"{command.NAME} is not allowed {self.state.value}", None)
            return
        try:
            await spec.handler(self, command)
        except CommandError as exc:
            self._unpause()
            if self.selected is not None and exc.status == "NO":
                await self.announce_updates(expunge=spec.expunge_after)
            rcode = r.ResponseCode.plain(exc.code) if exc.code else None
            if exc.status == "BAD":
                await self._bad(command.tag, exc.text, exc.code)
            else:
                self.tagged(command.tag, exc.status, exc.text, rcode)
        except PoboxError as exc:
            self._unpause()
            text, code = error_code(exc)
            log.info("%s %s failed: %s", self.peer, command.NAME, text)
            self.tagged(command.tag, "NO", text, r.ResponseCode.plain(code) if code else None)


def _only_star(sequence_set: SequenceSet) -> bool:
    return all(a is None and b is None for a, b in sequence_set.ranges)


def _in_ranges(view: MailboxView, ranges: Iterable[tuple[int, int]]) -> list[int]:
    out: list[int] = []
    for first, last in ranges:
        out.extend(view.uid_range(first, last))
    return out


def make_handler(
    service: MailService,
    config: Config,
    *,
    tls: TlsManager | None = None,
    account_slots: SlotLimiter | None = None,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """The ``asyncio.start_server`` callback for the IMAP and IMAPS listeners (one
    per-account session count for both); *tls* enables STARTTLS."""
    if account_slots is None:
        account_slots = SlotLimiter(config.limits.max_imap_sessions_per_account)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = ImapSession(service, config, reader, writer, tls=tls)
        session.account_slots = account_slots
        await session.run()

    return handle
