"""``pobox export ADDRESS --format maildir|mbox DEST``: an account's mail as the user's own
copy (docs/backup.md, "Export").

The export is of one moment (``Store.snapshot``). A message expunged while the export runs may
be gone before it is written (embedded store): it is left out and counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from pobox.errors import InvalidInput, NotFound
from pobox.store.api import Store
from pobox.store.rows import uidl_for
from pobox.transfer import maildir, mbox
from pobox.transfer.backup import Reporter, _Silent

FORMATS = ("maildir", "mbox")


@dataclass
class ExportReport:
    mailboxes: int = 0
    messages: int = 0
    bytes: int = 0
    vanished: int = 0
    dropped_keywords: int = 0


async def export(
    store: Store,
    address: str,
    dest: Path,
    *,
    form: str,
    progress: Reporter | None = None,
) -> ExportReport:
    if form not in FORMATS:
        raise InvalidInput(f"--format {form!r}: use maildir or mbox")
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"{dest} is not empty: export into a new directory")
    reporter: Reporter = progress or _Silent()
    report = ExportReport()
    dest.mkdir(parents=True, exist_ok=True)
    async with store.snapshot([address]) as snap:
        (image,) = await snap.accounts()
        reporter.set_total(sum(len(mb.messages) for mb in image.mailboxes))
        for mb in image.mailboxes:
            report.mailboxes += 1
            if form == "maildir":
                writer = maildir.MaildirWriter(dest, mb.name, mb.uidvalidity, mb.uidnext)
            else:
                path = mbox.mbox_path(dest, mb.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                fp = open(path, "wb")  # noqa: SIM115 - closed below
            try:
                for m in mb.messages:
                    try:
                        data = await snap.read_content(m.content)
                    except NotFound:
                        report.vanished += 1
                        reporter.advance(1)
                        continue
                    if form == "maildir":
                        message = maildir.MaildirMessage(
                            m.uid,
                            m.flags,
                            m.internal_date,
                            data,
                            m.pop3_uidl or uidl_for(m.uid, mb.uidvalidity),
                        )
                        await asyncio.to_thread(writer.add, message)
                    else:
                        await asyncio.to_thread(
                            mbox.write_message, fp, data, m.flags, m.internal_date
                        )
                    report.messages += 1
                    report.bytes += len(data)
                    reporter.advance(1, nbytes=len(data))
            finally:
                if form == "maildir":
                    writer.finish()
                    report.dropped_keywords += len(writer.dropped)
                else:
                    fp.close()
    return report
