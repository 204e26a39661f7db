"""The POP3 session: the RFC 1939 state machine over asyncio streams.

AUTHORIZATION (USER/PASS, AUTH, CAPA, UTF8, STLS) → TRANSACTION (the maildrop is locked and
numbered) → UPDATE (QUIT: the deletion marks are applied by :meth:`Maildrop.commit`). A dropped
connection, an idle timeout or an internal error skips UPDATE: nothing is deleted, and the lock is
released in every case. Parsing and reply formatting live in :mod:`pobox.pop3.protocol`; this
module only talks to :mod:`pobox.service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

from pobox import metrics, sasl
from pobox.config import Config, LimitsConfig, Pop3Config
from pobox.errors import Expunged, InUse, PoboxError, Temporary
from pobox.log import log_event
from pobox.net.limits import CommandPacer, close_stream, peer_ip
from pobox.net.tls import is_loopback, is_tls, prepare_upgrade, resume_reading
from pobox.pop3 import protocol as p
from pobox.service.auth import Authenticated, Blocked, login_fact
from pobox.service.mail import MailService
from pobox.service.maildrop import DropMessage, Maildrop
from pobox.service.policy import Retention
from pobox.store.api import Account, Content

log = logging.getLogger("pobox.pop3")

#: Consecutive invalid commands before the server gives up on a client.
MAX_BAD_COMMANDS = 20
#: Read size for the socket.
CHUNK = 64 * 1024
#: Read and write size for message content: a message up to this size is sent in one write.
CONTENT_CHUNK = 256 * 1024
#: TOP's first read: enough for most headers, so TOP n 0 is one small read.
TOP_FIRST_READ = 16 * 1024
IMPLEMENTATION = "pobox"
#: Pipelined commands answered in a row before the session lets other connections run.
YIELD_EVERY = 32

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
#: The STLS seam: upgrade the connection in place (``writer.start_tls(context)``). None: no TLS.
StartTls = Callable[[asyncio.StreamWriter], Awaitable[None]]


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


_AUTHORIZATION_COMMANDS = (p.User, p.Pass, p.Apop, p.Auth, p.Capa, p.Stls, p.Utf8, p.Quit)
_TRANSACTION_COMMANDS = (
    p.Capa,
    p.Stat,
    p.List,
    p.Uidl,
    p.Retr,
    p.Top,
    p.Dele,
    p.Noop,
    p.Rset,
    p.Last,
    p.Quit,
)


def _on_one_message(command: p.Command | p.BadCommand) -> bool:
    """RETR, TOP, DELE, LIST n, UIDL n: not paced after login (docs/pop3.md). A download is
    a few of them per message, and each costs the server about what the client has to read."""
    if isinstance(command, (p.Retr, p.Top, p.Dele)):
        return True
    return isinstance(command, (p.List, p.Uidl)) and command.number is not None


class _End(Exception):
    """Close the connection now; the reason is logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Counters:
    commands: int = 0
    retr: int = 0
    top: int = 0
    dele: int = 0
    deleted: int = 0
    octets: int = 0
    auth_failures: int = 0
    octets_in: int = 0
    octets_out: int = 0


class Pop3Session:
    def __init__(
        self,
        service: MailService,
        config: Pop3Config,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        hostname: str = "localhost",
        starttls: StartTls | None = None,
        limits: LimitsConfig | None = None,
        allow_plaintext_auth: bool = False,
    ) -> None:
        self.service = service
        self.config = config
        self.reader = reader
        self.writer = writer
        self.hostname = hostname
        self.starttls = starttls
        self.tls = is_tls(writer)  # implicit TLS (POP3S), or after STLS
        self.allow_plaintext_auth = allow_plaintext_auth
        self.utf8 = False
        self.state = State.AUTHORIZATION
        self.lines = p.LineBuffer()
        self.account: Account | None = None
        #: how it logged in: the app password's label and revocation flag (docs/app-passwords.md)
        self.credential: Authenticated | None = None
        self.maildrop: Maildrop | None = None
        self.counters = _Counters()
        self._user: str | None = None
        #: the command being answered, for the metrics: name, start
        self._running: tuple[str, float] | None = None
        self._bad = 0
        self._expunged: set[int] = set()
        self._midstream = False  # inside a multi-line reply: an -ERR now would corrupt it
        self._buffered = 0  # lines taken from the buffer since the last wait for input
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"
        self.remote_ip = peer_ip(peer)
        self.pacer = CommandPacer(limits.commands_per_second if limits else 100)
        #: the server is shutting down (pobox.net.drain); _reading: waiting for a command
        self._stopping = False
        self._reading = False
        self._task: asyncio.Task[None] | None = None

    def stopping(self) -> bool:
        """True once the server shuts down (a call: it changes behind the session's back)."""
        return self._stopping

    def _on_shutdown(self, force: bool) -> None:
        """The server is shutting down: a session waiting for a command is interrupted and
        told -ERR (never entering UPDATE: nothing is deleted); one answering a command is told
        when it next waits, or cut off with *force*."""
        self._stopping = True
        if (force or self._reading) and self._task is not None:
            self._task.cancel()

    @property
    def secure(self) -> bool:
        """TLS, or a client on a loopback address: a password may cross this connection."""
        return self.tls or is_loopback(self.remote_ip)

    @property
    def plaintext_auth_allowed(self) -> bool:
        return self.secure or self.allow_plaintext_auth

    async def _privacy_required(self) -> bool:
        """No password over a connection that is neither TLS nor local (RFC 2595 §2.3): True
        after refusing. Not an authentication failure: no delay, no count."""
        if self.plaintext_auth_allowed:
            return False
        hint = "; use STLS or the POP3S port" if self.starttls is not None else ""
        await self._send(
            p.err(
                f"plaintext authentication is disabled on an unencrypted connection{hint}", p.AUTH
            )
        )
        return True

    # the connection ------------------------------------------------------------------------
    async def run(self) -> None:
        started = time.monotonic()
        end = "quit"
        self._task = asyncio.current_task()
        self.service.drain.register(self, self._on_shutdown)
        try:
            await self._send(p.ok(f"{self.hostname} POP3 server ready"))
            end = await self._loop()
        except _End as exc:
            end = exc.reason
        except TimeoutError:
            end = "timeout"
            if not self._midstream:
                self.writer.write(p.err("disconnected for inactivity"))
        except (ConnectionError, asyncio.IncompleteReadError):
            end = "eof"
        except asyncio.CancelledError:
            # the server is shutting down: clean up and end quietly (the task is the
            # connection's root; nothing waits for its cancellation)
            end = "shutdown"
        except Exception:
            if self.writer.transport.is_closing():
                # the client went away while we wrote to it (uvloop raises RuntimeError on a
                # write to a closed transport where asyncio only logs a warning)
                end = "eof"
                return
            end = "error"
            log.exception("pop3 session peer=%s failed", self.peer)
            if not self._midstream:
                with contextlib.suppress(Exception):
                    await self._send(p.err("internal server error, closing", p.SYS_TEMP))
        finally:
            await self._cleanup()
            self.service.drain.unregister(self)
            c = self.counters
            log_event(
                log,
                "session",
                proto="pop3",
                user=self.account.address if self.account else "",
                **login_fact(self.credential),
                ip=self.remote_ip,
                tls=self.tls,
                duration=time.monotonic() - started,
                commands=c.commands,
                **{"in": c.octets_in, "out": c.octets_out},
                end=end,
                retr=c.retr,
                top=c.top,
                dele=c.dele,
                deleted=c.deleted,
                auth_failures=c.auth_failures,
            )

    async def _cleanup(self) -> None:
        if self.maildrop is not None:
            metrics.session_closed("pop3")
            maildrop, self.maildrop = self.maildrop, None
            try:
                await maildrop.close()
            except Exception:
                log.exception("pop3 could not release the maildrop lock of %s", self.account)
        await close_stream(self.writer)

    async def _send(self, data: bytes) -> None:
        if self._running is not None:
            self._answered(data)
        self.counters.octets_out += len(data)
        self.writer.write(data)
        await self._drain()

    def _answered(self, reply: bytes) -> None:
        """Count the command that *reply* answers, if it is a status line (pobox.metrics)."""
        if reply.startswith(b"+OK"):
            result = "+OK"
        elif reply.startswith(b"-ERR"):
            result = "-ERR"
        else:
            return  # a SASL challenge: the command goes on
        assert self._running is not None
        name, started = self._running
        self._running = None
        seconds = None if name == metrics.INVALID else time.perf_counter() - started
        metrics.command("pop3", name, result, seconds)

    async def _drain(self) -> None:
        """Wait until the client takes what was written, but not longer than the idle timeout
        (a client that stops reading must not hold the maildrop lock for ever). When the kernel
        took everything already (the usual case for a reply), there is nothing to wait for."""
        transport = self.writer.transport
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            return
        async with asyncio.timeout(self.config.idle_timeout):
            await self.writer.drain()

    async def _read_line(self, limit: int) -> bytes | p.LineTooLong | None:
        """The next line (None at end of input) within the idle timeout: a client that sends
        a byte now and then (a slow drip) is timed out as one that sends nothing."""
        deadline = time.monotonic() + self.config.idle_timeout
        while True:
            line = self.lines.next_line(limit)
            if line is not None:
                self._buffered += 1
                if self._buffered >= YIELD_EVERY:
                    # pipelined commands answered without waiting for anything: let the other
                    # connections of this process have their turn now and then
                    self._buffered = 0
                    await asyncio.sleep(0)
                return line
            self._buffered = 0
            if self.stopping():
                await self._shutting_down()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._reading = True
            try:
                async with asyncio.timeout(remaining):  # no task per read, unlike wait_for
                    data = await self.reader.read(CHUNK)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not self.stopping() or task is None or task.uncancel() > 0:
                    raise
                await self._shutting_down()
            finally:
                self._reading = False
            if not data:
                return None
            self.counters.octets_in += len(data)
            self.lines.feed(data)

    async def _loop(self) -> str:
        while True:
            line = await self._read_line(p.MAX_COMMAND_LINE)
            if line is None:
                return "eof"
            self.counters.commands += 1
            if self.credential is not None and self.credential.revoked:
                # its app password was deleted: end without UPDATE, nothing is deleted
                await self._send(p.err("this app password was revoked; nothing deleted", p.AUTH))
                raise _End("revoked")
            started = time.perf_counter()
            if isinstance(line, p.LineTooLong):
                self._running = (metrics.INVALID, started)
                await self.pacer.pace()
                await self._bad_command(f"command line too long (limit {p.MAX_COMMAND_LINE})")
                continue
            command = p.parse_command(line)
            name = (
                metrics.INVALID
                if isinstance(command, p.BadCommand)
                else type(command).__name__.upper()
            )
            self._running = (name, started)
            if not (self.state is State.TRANSACTION and _on_one_message(command)):
                await self.pacer.pace()  # over the command rate: slowed down, never dropped
            if isinstance(command, p.BadCommand):
                await self._bad_command(command.reason)
                continue
            allowed = (
                _AUTHORIZATION_COMMANDS
                if self.state is State.AUTHORIZATION
                else _TRANSACTION_COMMANDS
            )
            if not isinstance(command, allowed):
                name = type(command).__name__.upper()
                where = "before login" if self.state is State.AUTHORIZATION else "after login"
                await self._bad_command(f"{name} is not valid {where}")
                continue
            self._bad = 0
            try:
                if await self._dispatch(command):
                    return "quit"
            except Temporary as exc:
                if self._midstream:
                    raise
                await self._send(p.err(str(exc), p.SYS_TEMP))
            except PoboxError as exc:
                if self._midstream:
                    raise
                await self._send(p.err(str(exc), p.SYS_PERM))

    async def _shutting_down(self) -> NoReturn:
        """-ERR and the end of the session, without UPDATE (RFC 1939 §6: only QUIT commits
        the deletions; a session the server ends keeps every message)."""
        await self._send(
            p.err("server shutting down, nothing deleted; try again later", p.SYS_TEMP)
        )
        raise _End("shutdown")

    async def _bad_command(self, reason: str) -> None:
        self._bad += 1
        if self._bad >= MAX_BAD_COMMANDS:
            await self._send(p.err(f"{reason}; too many invalid commands, closing"))
            raise _End("bad-commands")
        await self._send(p.err(reason))

    async def _dispatch(self, command: p.Command) -> bool:
        """Answer one command; True when the session ends (QUIT)."""
        match command:
            case p.Quit():
                await self._quit()
                return True
            case p.Capa():
                await self._capa()
            case p.User() | p.Pass() | p.Auth(str()) if await self._privacy_required():
                self._user = None
            case p.User(name):
                self._user = name
                await self._send(p.ok("send PASS"))
            case p.Pass(password):
                if self._user is None:
                    await self._bad_command("send USER first")
                else:
                    user, self._user = self._user, None
                    await self._login(user, password)
            case p.Auth(mechanism, initial):
                await self._auth(mechanism, initial)
            case p.Apop():
                await self._send(p.err("APOP is not supported; use USER/PASS or AUTH"))
            case p.Utf8():
                self.utf8 = True
                await self._send(p.ok("UTF8 enabled"))
            case p.Stls():
                await self._stls()
            case p.Stat():
                count, size = self._drop.stat()
                await self._send(p.ok(f"{count} {size}"))
            case p.List(None):
                count, size = self._drop.stat()
                first = p.ok(f"{count} messages ({size} octets)")
                await self._send(
                    p.listing(first, ((n, m.meta.size) for n, m in self._drop.visible()))
                )
            case p.List(number):
                assert number is not None
                if (message := await self._message(number)) is not None:
                    await self._send(p.ok(f"{number} {message.meta.size}"))
            case p.Uidl(None):
                first = p.ok("unique-id listing follows")
                await self._send(p.listing(first, ((n, m.uidl) for n, m in self._drop.visible())))
            case p.Uidl(number):
                assert number is not None
                if (message := await self._message(number)) is not None:
                    await self._send(p.ok(f"{number} {message.uidl}"))
            case p.Retr(number):
                await self._retrieve(number, None)
            case p.Top(number, lines):
                await self._retrieve(number, lines)
            case p.Dele(number):
                if (message := await self._message(number)) is not None:
                    message.deleted = True
                    self.counters.dele += 1
                    await self._send(p.ok(f"message {number} deleted"))
            case p.Noop():
                await self._send(p.ok())
            case p.Rset():
                self._drop.reset()
                count, size = self._drop.stat()
                await self._send(p.ok(f"maildrop has {count} messages ({size} octets)"))
            case p.Last():
                await self._send(p.err("LAST is obsolete (RFC 1725); use UIDL"))
        return False

    # AUTHORIZATION -------------------------------------------------------------------------
    def _default_retention(self) -> Retention:
        try:
            return Retention.parse(self.config.retention)
        except ValueError:
            return Retention("delete")

    async def _capa(self) -> None:
        if self.maildrop is not None:
            expire = self.maildrop.retention.expire_capability()
        else:
            expire = f"{self._default_retention().expire_capability()} USER"
        stls = self.starttls is not None and not self.tls and self.state is State.AUTHORIZATION
        lines = p.capabilities(
            expire,
            stls=stls,
            implementation=IMPLEMENTATION,
            plaintext=self.plaintext_auth_allowed or self.state is not State.AUTHORIZATION,
        )
        await self._send(p.multiline(p.ok("capability list follows"), lines))

    async def _stls(self) -> None:
        if self.starttls is None:
            await self._send(p.err("STLS is not available"))
            return
        if self.tls:
            await self._send(p.err("TLS is already active"))
            return
        # RFC 2595 §4: nothing the client sent before the handshake may be read after it
        prepare_upgrade(self.reader, self.writer)
        self.lines.discard_pending()
        await self._send(p.ok("begin TLS negotiation"))
        await self.starttls(self.writer)
        resume_reading(self.writer)
        self.tls = True
        self._user = None

    async def _auth(self, mechanism: str | None, initial: bytes | None) -> None:
        if mechanism is None:
            offered = sasl.MECHANISMS if self.plaintext_auth_allowed else ()
            names = [m.encode("ascii") for m in offered]
            await self._send(p.multiline(p.ok("supported mechanisms follow"), names))
            return
        exchange = sasl.start(mechanism, initial)
        if exchange is None:
            await self._send(p.err(f"unsupported authentication mechanism {mechanism[:40]}"))
            return
        step = exchange.first
        while isinstance(step, sasl.Challenge):
            await self._send(p.continuation(sasl.encode(step.data)))
            line = await self._read_line(p.MAX_SASL_LINE)
            if line is None:
                raise _End("eof")
            if isinstance(line, p.LineTooLong):
                step = sasl.Failure("response line too long")
                break
            if line.strip() == b"*":
                await self._send(p.err("authentication cancelled"))
                return
            step = exchange.respond(line)
        if isinstance(step, sasl.Failure):
            await self._auth_failed(step.reason)
            return
        assert isinstance(step, sasl.Credentials)
        if step.authzid and step.authzid != step.authcid:
            await self._auth_failed("not authorized to act as another user")
            return
        await self._login(step.authcid, step.password)

    async def _auth_failed(self, reason: str = "authentication failed", code: str = p.AUTH) -> None:
        self.counters.auth_failures += 1
        await asyncio.sleep(self.config.auth_failure_delay)
        if self.counters.auth_failures >= self.config.max_auth_failures:
            await self._send(p.err(f"{reason}; too many failures, closing", code))
            raise _End("auth-failures")
        await self._send(p.err(reason, code))

    async def _login(self, username: str, password: str) -> None:
        try:
            result = await self.service.auth.sign_in(username, password, remote=self.remote_ip)
        except Blocked:
            metrics.login("pop3", "blocked")
            await self._auth_failed("too many failed logins; try again later", p.SYS_TEMP)
            return
        except Temporary as exc:
            metrics.login("pop3", "unavailable")
            await self._send(p.err(f"authentication unavailable: {exc}", p.SYS_TEMP))
            return
        metrics.login("pop3", "failed" if result is None else "ok")
        if result is None:
            await self._auth_failed()
            return
        account = result.account
        try:
            maildrop = await self.service.open_maildrop(account)
        except InUse:
            await self._send(p.err("maildrop is locked by another POP3 session", p.IN_USE))
            return
        except Temporary as exc:
            await self._send(p.err(f"cannot open the maildrop now: {exc}", p.SYS_TEMP))
            return
        except PoboxError as exc:
            await self._send(p.err(f"cannot open the maildrop: {exc}", p.SYS_PERM))
            return
        self.account = account
        self.credential = result
        self.maildrop = maildrop
        metrics.session_opened("pop3")
        self.state = State.TRANSACTION
        count, size = maildrop.stat()
        await self._send(p.ok(f"maildrop has {count} messages ({size} octets)"))

    # TRANSACTION ---------------------------------------------------------------------------
    @property
    def _drop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    async def _message(self, number: int) -> DropMessage | None:
        """The live message numbered *number*, or None after answering -ERR."""
        message = self._drop.get(number)
        if message is None:
            deleted = 1 <= number <= len(self._drop.messages)
            await self._send(
                p.err(f"message {number} {'already deleted' if deleted else 'does not exist'}")
            )
        return message

    async def _retrieve(self, number: int, top: int | None) -> None:
        message = await self._message(number)
        if message is None:
            return
        gone = p.err(f"message {number} was removed by another session")
        if number in self._expunged:
            await self._send(gone)
            return
        try:
            content = await self._drop.open_content(message)
        except Expunged:
            self._expunged.add(number)
            await self._send(gone)
            return
        try:
            await self._stream(message, content, top)
        finally:
            content.close()

    async def _stream(self, message: DropMessage, content: Content, top: int | None) -> None:
        scanner: p.TopScanner | None = None
        if top is None:
            self.counters.retr += 1
            # \Seen is written while the message streams (grouped with the next RETRs' while a
            # commit is under way); it completes even if the client drops
            self._drop.mark_seen_soon(message)
            head = p.ok(f"{content.size} octets")
        else:
            self.counters.top += 1
            scanner = p.TopScanner(top)
            head = p.ok("top of message follows")
        self._midstream = True
        await self._send_body(head, content, scanner)

    async def _send_body(self, head: bytes, content: Content, scanner: p.TopScanner | None) -> None:
        """The status line and the byte-stuffed message (or its top), in few large writes.

        A message up to :data:`CONTENT_CHUNK` is one read and one write (status line and
        final dot included); a larger one goes in writes of that size. TOP reads
        :data:`TOP_FIRST_READ` first, which holds most headers.
        """
        if self._running is not None:
            self._answered(head)
        stuffer = p.DotStuffer()
        limit = content.size
        offset = 0
        out = [head]
        buffered = 0
        step = CONTENT_CHUNK if scanner is None else TOP_FIRST_READ
        while offset < limit:
            chunk = content.read(offset, min(step, limit - offset))
            if not chunk:
                break
            step = CONTENT_CHUNK
            if scanner is not None:
                stop = scanner.feed(chunk)
                if stop is not None:
                    chunk = chunk[: stop - offset]
                    limit = stop
            offset += len(chunk)
            out.append(stuffer.feed(chunk))
            buffered += len(chunk)
            if buffered >= CONTENT_CHUNK and offset < limit:
                self.counters.octets_out += sum(map(len, out))
                self.writer.write(b"".join(out))
                out = []
                buffered = 0
                await self._drain()
        out.append(stuffer.finish())
        self.counters.octets_out += sum(map(len, out))
        self.writer.write(b"".join(out))
        self._midstream = False
        self.counters.octets += offset
        await self._drain()

    # UPDATE --------------------------------------------------------------------------------
    async def _quit(self) -> None:
        if self.maildrop is None:
            await self._send(p.ok(f"{self.hostname} POP3 server signing off"))
            return
        self.state = State.UPDATE
        try:
            self.counters.deleted = await self.maildrop.commit()
        except Exception as exc:
            log.exception("pop3 update failed for %s", self.maildrop.account.address)
            temporary = isinstance(exc, Temporary) or not isinstance(exc, PoboxError)
            code = p.SYS_TEMP if temporary else p.SYS_PERM
            await self._send(p.err("some deleted messages were not removed", code))
            return
        left, _size = self.maildrop.stat()
        status = "maildrop empty" if left == 0 else f"{left} messages left"
        await self._send(p.ok(f"{self.hostname} POP3 server signing off ({status})"))


def make_handler(
    service: MailService, config: Config, *, starttls: StartTls | None = None
) -> StreamHandler:
    """The ``asyncio.start_server`` callback for the POP3 listener."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Pop3Session(
            service,
            config.pop3,
            reader,
            writer,
            hostname=config.hostname,
            starttls=starttls,
            limits=config.limits,
            allow_plaintext_auth=config.tls.allow_plaintext_auth,
        )
        await session.run()

    return handle
