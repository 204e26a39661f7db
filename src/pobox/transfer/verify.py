"""``pobox backup verify DEST``: is the backup whole and sound? (docs/backup.md)

Checks that a run finished (no ``INCOMPLETE`` mark), that the manifest names an index with the
SHA-256 it recorded, that the index is well formed (UIDs ascending and below UIDNEXT, MODSEQs
not above HIGHESTMODSEQ), and that every content it names is there, decompresses, has its
SHA-256 and the size the index gives. Every problem is reported, not just the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pobox.errors import InvalidInput
from pobox.store.api import AccountImage
from pobox.transfer import format as fmt
from pobox.transfer.backup import Reporter, _Silent

PARALLEL = 4


@dataclass
class VerifyReport:
    created: str = ""
    accounts: int = 0
    messages: int = 0
    contents: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        return not self.problems


def _check_image(image: AccountImage, problems: list[str]) -> None:
    for mb in image.mailboxes:
        where = f"{image.address} {mb.name}"
        last = 0
        for m in mb.messages:
            if m.uid <= last:
                problems.append(f"{where}: UID {m.uid} out of order or repeated")
            if m.uid >= mb.uidnext:
                problems.append(f"{where}: UID {m.uid} is not below UIDNEXT {mb.uidnext}")
            if m.modseq > mb.highest_modseq:
                problems.append(f"{where}: UID {m.uid} has MODSEQ above HIGHESTMODSEQ")
            last = m.uid
        for e in mb.expunged:
            if e.uid >= mb.uidnext:
                problems.append(f"{where}: expunged UID {e.uid} is not below UIDNEXT")


def _check_object(root: Path, digest: str, size: int) -> str | None:
    try:
        data = fmt.read_object(root, digest)
    except InvalidInput as exc:
        return str(exc)
    except OSError as exc:
        return f"message content {digest}: {exc.strerror or exc}"
    if len(data) != size:
        return f"message content {digest} has {len(data)} bytes, the index says {size}"
    return None


def verify(root: Path, progress: Reporter | None = None) -> VerifyReport:
    """Blocking: check the backup in *root* (see the module docstring)."""
    reporter: Reporter = progress or _Silent()
    report = VerifyReport()
    if (root / fmt.INCOMPLETE).exists():
        report.problems.append(
            "a backup run did not finish (INCOMPLETE is there): the next run completes it"
        )
    try:
        manifest = fmt.read_manifest(root)
        index = fmt.read_index(root, manifest)
    except InvalidInput as exc:
        report.problems.append(str(exc))
        return report
    except OSError as exc:
        report.problems.append(f"{root}: {exc.strerror or exc}")
        return report
    report.created = str(manifest.get("created", ""))
    sizes: dict[str, int] = {}
    images: list[AccountImage] = []
    for document in index["accounts"]:
        try:
            image = fmt.account_image(document)
        except InvalidInput as exc:
            report.problems.append(str(exc))
            continue
        images.append(image)
        _check_image(image, report.problems)
        for mb in image.mailboxes:
            report.messages += len(mb.messages)
            for m in mb.messages:
                sizes[m.content] = m.size
        for r in image.recoverable:
            if r.content is not None:
                sizes[r.content] = r.size
    report.accounts = len(images)
    expected = manifest.get("messages")
    if isinstance(expected, int) and expected != report.messages:
        report.problems.append(
            f"the index holds {report.messages} messages, the manifest says {expected}"
        )
    report.contents = len(sizes)
    reporter.set_total(len(sizes))

    def check(item: tuple[str, int]) -> str | None:
        return _check_object(root, *item)

    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="pobox-verify") as pool:
        results: Iterable[Any] = pool.map(check, sizes.items())
        for (_digest, size), problem in zip(sizes.items(), results, strict=True):
            if problem is not None:
                report.problems.append(problem)
            else:
                report.bytes += size
            reporter.advance(1, nbytes=size)
    return report
