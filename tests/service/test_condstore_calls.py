"""CONDSTORE and QRESYNC answer from the shared mailbox index: store calls per command are O(1)
(none per message), and a command that does not use them makes no extra call."""

from __future__ import annotations

from collections import Counter

from tests.service.test_index import Client, Counting, _measure, imap  # noqa: F401

from pobox.server import Running


async def test_condstore_and_qresync_make_o1_store_calls(imap: tuple[Running, Counting]) -> None:  # noqa: F811
    running, counting = imap
    a, b = await Client.connect(running), await Client.connect(running)
    try:
        await a.command("ENABLE QRESYNC")
        selected = await a.command("SELECT INBOX")
        modseq = int(next(x for x in selected if b"HIGHESTMODSEQ" in x).split()[3].rstrip(b"]"))
        uidvalidity = int(next(x for x in selected if b"UIDVALIDITY" in x).split()[3].rstrip(b"]"))
        await b.command("SELECT INBOX")
        await b.command("UID STORE 5,6 +FLAGS.SILENT (\\Flagged)")
        await b.command("UID STORE 7,8 +FLAGS.SILENT (\\Deleted)")
        await b.command("EXPUNGE")
        await a.command("NOOP")  # (VANISHED 7:8: the numbers below are without them)
        lines: list[bytes] = []

        async def run(text: str) -> None:
            lines.clear()
            lines.extend(await a.command(text))

        # the index has everything: no store call for CHANGEDSINCE, MODSEQ or SEARCH MODSEQ
        calls = await _measure(counting, lambda: run(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq})"))
        assert calls == Counter(), calls
        assert sum(1 for x in lines if b" FETCH (" in x) == 2
        calls = await _measure(counting, lambda: run(f"UID SEARCH MODSEQ {modseq + 1}"))
        assert calls == Counter(), calls
        calls = await _measure(counting, lambda: run("FETCH 1:* (UID MODSEQ)"))
        assert calls == Counter(), calls
        # VANISHED (EARLIER) reads the expunge log once
        calls = await _measure(
            counting, lambda: run(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
        )
        assert calls == Counter({"expunged_since": 1}), calls
        assert b"* VANISHED (EARLIER) 7:8\r\n" in lines, lines
        # one conditional write for the whole set
        calls = await _measure(
            counting, lambda: run(f"STORE 1:* (UNCHANGEDSINCE {modseq}) +FLAGS.SILENT (\\Seen)")
        )
        assert calls == Counter({"set_flags": 1}), calls
        assert lines[-1].startswith(b"t") and b"[MODIFIED 5:6]" in lines[-1], lines
        # QRESYNC's SELECT: the mailbox row and the expunge log, nothing per message
        calls = await _measure(
            counting, lambda: run(f"EXAMINE INBOX (QRESYNC ({uidvalidity} {modseq} 1:40))")
        )
        assert calls == Counter({"get_mailbox": 1, "expunged_since": 1}), calls
        assert sum(1 for x in lines if b" FETCH (" in x) == 38  # flagged, then \Seen for all
        # without the extensions' parameters, SELECT reads just the mailbox row as before
        calls = await _measure(counting, lambda: run("EXAMINE INBOX"))
        assert calls == Counter({"get_mailbox": 1}), calls
    finally:
        await a.close()
        await b.close()
