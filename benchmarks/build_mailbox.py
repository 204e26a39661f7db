"""Build a pobox data directory whose INBOX holds N realistic messages, through the store API.

For benchmarks/large_mailbox.py --existing (a million messages take hours over LMTP; written
through the store in batches of 500 they take minutes). The messages are those of
large_mailbox.py (the same generator), so its checks of hit counts hold. Put the directory on a
fast file system (``/dev/shm``) when the build's per-message fsync is not what is measured.

    .venv/bin/python benchmarks/build_mailbox.py /dev/shm/big1m 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from large_mailbox import realistic  # noqa: E402

from pobox.service.content import chunked, spool_message  # noqa: E402
from pobox.service.passwords import hash_password  # noqa: E402
from pobox.store.factory import create_store  # noqa: E402

BATCH = 500


async def build(root: Path, total: int) -> None:
    store = create_store("sqlite", root)
    await store.open()
    try:
        account = await store.create_account(common.USER, hash_password(common.PASSWORD))
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        started = time.perf_counter()
        for start in range(0, total, BATCH):
            numbers = range(start, min(start + BATCH, total))
            messages = await asyncio.gather(
                *(
                    asyncio.to_thread(
                        spool_message, store.new_spool(), chunked(realistic(n, total))
                    )
                    for n in numbers
                )
            )
            await store.append_many(inbox.id, messages)
            if start % 50_000 == 0:
                elapsed = time.perf_counter() - started
                print(f"{start + len(numbers)} messages, {elapsed:.0f} s", flush=True)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a new pobox data directory")
    parser.add_argument("messages", type=int)
    args = parser.parse_args()
    if (args.data / "pobox.db").exists():
        parser.error(f"{args.data} holds a pobox store already")
    asyncio.run(build(args.data, args.messages))


if __name__ == "__main__":
    main()
