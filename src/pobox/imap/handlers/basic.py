"""CAPABILITY, NOOP, CHECK, LOGOUT, ID, ENABLE, STARTTLS, COMPRESS (RFC 9051 §6.1, RFC 2971,
RFC 5161, RFC 4978)."""

from __future__ import annotations

from typing import Any

from pobox import __version__
from pobox.imap import capabilities as caps
from pobox.imap import commands as c
from pobox.imap import responses as r
from pobox.imap.session import (
    ANY,
    AUTH,
    NOT_AUTH,
    CommandError,
    CommandSpec,
    ImapSession,
    State,
)


async def capability(session: ImapSession, cmd: c.Capability) -> None:
    session.send(r.CapabilityResponse(session.capabilities()))
    session.tagged(cmd.tag, "OK", "CAPABILITY completed")


async def noop(session: ImapSession, cmd: c.Noop | c.Check) -> None:
    if session.selected is not None:
        # a poll sees what another worker or node committed before it (RFC 9051 §6.1.2)
        await session.service.index.poll(session.selected.view.index)
    await session.announce_updates()
    session.tagged(cmd.tag, "OK", f"{cmd.NAME} completed")


async def logout(session: ImapSession, cmd: c.Logout) -> None:
    session.send(r.bye("pobox IMAP server logging out"))
    session.tagged(cmd.tag, "OK", "LOGOUT completed")
    session.state = State.LOGOUT


async def ident(session: ImapSession, cmd: c.Id) -> None:
    session.send(r.IdResponse((("name", "pobox"), ("version", __version__))))
    session.tagged(cmd.tag, "OK", "ID completed")


async def enable(session: ImapSession, cmd: c.Enable) -> None:
    """RFC 5161: list only what this command newly enabled. QRESYNC implies CONDSTORE (RFC
    7162 §3.2.3); turning CONDSTORE on with a mailbox selected tells its HIGHESTMODSEQ."""
    newly: list[str] = []
    condstore = False
    for name in cmd.capabilities:
        upper = name.upper()
        if upper == "CONDSTORE" and not session.condstore and not condstore:
            condstore = True  # (enable_condstore turns it on, below)
            newly.append(upper)
        elif upper in caps.ENABLEABLE - {"CONDSTORE"} and upper not in session.enabled:
            session.enabled.add(upper)
            newly.append("IMAP4rev2" if upper == "IMAP4REV2" else upper)
    session.protocol.utf8 = session.utf8
    session.send(r.enabled(newly))
    if condstore or "QRESYNC" in newly:
        session.enable_condstore()
    session.tagged(cmd.tag, "OK", "ENABLE completed")


async def starttls(session: ImapSession, cmd: c.StartTls) -> None:
    """RFC 9051 §6.2.1; the client asks for CAPABILITY again once TLS is up."""
    if session.tls:
        raise CommandError("TLS is already active", status="BAD")
    if session.tls_manager is None:
        # STARTTLS is not advertised without a certificate
        raise CommandError("TLS is not configured on this server", "CANNOT")
    await session.start_tls(cmd.tag)


async def compress(session: ImapSession, cmd: c.Compress) -> None:
    """RFC 4978 §3: DEFLATE is the one mechanism; a second COMPRESS is refused."""
    if cmd.mechanism != "DEFLATE":
        raise CommandError(f"unknown compression mechanism {cmd.mechanism}", status="BAD")
    if session.compression is not None:
        raise CommandError("DEFLATE is active already", "COMPRESSIONACTIVE")
    await session.start_compression(cmd.tag)


SPECS: dict[type[Any], CommandSpec] = {
    c.Capability: CommandSpec(capability, ANY),
    c.Noop: CommandSpec(noop, ANY),
    c.Check: CommandSpec(noop, frozenset({State.SELECTED})),
    c.Logout: CommandSpec(logout, ANY),
    c.Id: CommandSpec(ident, ANY),
    c.Enable: CommandSpec(enable, AUTH),
    c.StartTls: CommandSpec(starttls, NOT_AUTH),
    c.Compress: CommandSpec(compress, AUTH),
}
