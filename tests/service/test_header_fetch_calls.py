"""FETCH of the top-level header (what clients ask on every sync) is answered from the stored
structure: no message file is opened, and the answer is the same as from the file."""

from __future__ import annotations

from collections import Counter

from tests.service.test_index import Client, Counting, _measure, imap  # noqa: F401

from pobox.server import Running


async def test_header_fields_read_no_message_file(imap: tuple[Running, Counting]) -> None:  # noqa: F811
    running, counting = imap
    client = await Client.connect(running)
    try:
        await client.command("SELECT INBOX")
        lines: list[bytes] = []

        async def run(text: str) -> None:
            lines.clear()
            lines.extend(await client.command(text))

        for items in (
            "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]",
            "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED)]",
            "BODY.PEEK[HEADER]",
            "RFC822.HEADER",
            "BODY.PEEK[HEADER]<0.10>",
        ):
            calls = await _measure(counting, lambda items=items: run(f"FETCH 1:5 (UID {items})"))
            assert calls == Counter({"get_structures": 1}), (items, calls)
            from_structure = b"".join(lines)
            # the same items beside one that needs the file: read from the file this time
            calls = await _measure(
                counting, lambda items=items: run(f"FETCH 1:5 (UID {items} BODY.PEEK[TEXT]<0.1>)")
            )
            assert calls["open_contents"] == 1, (items, calls)
            from_file = b"".join(lines)
            assert from_structure.count(b" FETCH (") == 5
            for n in range(1, 6):
                one = from_structure.split(b"* %d FETCH " % n)[1].split(b"\r\n* ")[0]
                assert one.rsplit(b")", 1)[0] in from_file, (items, n)
    finally:
        await client.close()
