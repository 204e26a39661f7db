from __future__ import annotations

import asyncio

from pobox.service.content import chunked, spool_message
from pobox.store.api import MailboxId, MessageMeta, NewMessage, Store


def message_bytes(n: int, size: int = 0) -> bytes:
    body = b"x" * max(0, size)
    return (
        (
            f"From: sender{n}@example.org\r\nTo: rcpt@example.com\r\nSubject: message {n}\r\n"
            f"Message-ID: <{n}@example.org>\r\n\r\nbody {n}\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


async def new_message(store: Store, content: bytes, **kwargs: object) -> NewMessage:
    return await asyncio.to_thread(
        lambda: spool_message(store.new_spool(), chunked(content), **kwargs)  # type: ignore[arg-type]
    )


async def append(store: Store, mailbox: MailboxId, content: bytes, **kwargs: object) -> MessageMeta:
    return await store.append(mailbox, await new_message(store, content, **kwargs))
