"""Attachments in the compose form are handed on as the files the form parser spooled and
written into the message a piece at a time (pobox.service.webmail.Webmail.message_chunks):
never read whole, and stored exactly, in drafts and in what is sent, on both backends."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import io
import os
from email.message import EmailMessage
from typing import Any

import pytest
from starlette.datastructures import UploadFile
from tests.web.conftest import ALICE, BOB, Web

from pobox.service.webmail import ATTACHMENT_CHUNK, Outgoing


class Watched(io.BytesIO):
    """A file that says how it was read, and refuses to be read whole."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("the attachment was read whole")
        self.asked.append(size)
        return super().read(size)


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _attachments(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    out = {}
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[part.get_filename() or ""] = (part.get_content_type(), payload)
    return out


async def _stored(web: Web, address: str, folder: str) -> list[EmailMessage]:
    mailbox = await web.folder_id(address, folder)
    out = []
    for meta in await web.service.store.list_messages(mailbox):  # type: ignore[arg-type]
        content = await web.service.store.open_message(meta.mailbox_id, meta.uid)
        try:
            out.append(_parse(content.read(0, content.size)))
        finally:
            content.close()
    return out


async def test_a_draft_streams_its_attachments_from_their_files(web: Web) -> None:
    big = os.urandom(5 * ATTACHMENT_CHUNK + 1234)  # several pieces, not a multiple of 57
    odd = bytes(range(256)) * 3 + b"\r\n\x00 tail"  # CR, LF and NUL inside
    files = [Watched(big), Watched(odd), Watched(b"")]
    webmail = web.app.state.webmail
    alice = await web.service.accounts.require(ALICE)
    out = Outgoing(
        to=BOB,
        subject="files",
        body="three files",
        attachments=(
            ("big.bin", "application/octet-stream", files[0]),
            ("odd.txt", "text/plain", files[1]),
            ("empty", "image/png", files[2]),
        ),
    )
    await webmail.save_draft(alice, out)
    (draft,) = await _stored(web, ALICE, "Drafts")
    assert draft["Subject"] == "files"
    assert _attachments(draft) == {
        "big.bin": ("application/octet-stream", big),
        "odd.txt": ("text/plain", odd),
        "empty": ("image/png", b""),
    }
    body = draft.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "three files"
    for watched in files:  # read a piece at a time, up to its end
        assert watched.asked and max(watched.asked) <= ATTACHMENT_CHUNK
        assert watched.tell() == len(watched.getvalue())
    # the base64 is in lines of 76 characters, as RFC 2045 wants
    built = webmail.build(alice, Outgoing(attachments=(("x", "a/b", big),)), None)
    lines = built.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    encoded = [line for line in lines if len(line) == 76]
    assert len(encoded) == len(big) // 57


async def test_the_compose_form_never_reads_an_upload_whole(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pobox.service.domains import ServedDomains
    from pobox.service.submission import Submission

    service = web.service
    web.app.state.webmail.submission = Submission(
        service.store, service.accounts, service.delivery, ServedDomains(service.store, ()),
        service.config.hostname,
    )  # fmt: skip

    async def whole(self: UploadFile, size: int = -1) -> Any:
        raise AssertionError("an upload was read whole")

    monkeypatch.setattr(UploadFile, "read", whole)
    big = os.urandom(3 * 1024 * 1024 + 7)  # past the parser's 1 MiB: a temporary file
    small = b"some notes\n"
    await web.login()
    token = await web.csrf("/compose")
    saved = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "save", "to": BOB, "subject": "draft", "body": "d"},
        files=[
            ("attachment", ("photo.jpg", big, "image/jpeg")),
            ("attachment", ("notes.txt", small, "text/plain")),
        ],
    )
    assert saved.status_code == 303, saved.text
    (draft,) = await _stored(web, ALICE, "Drafts")
    assert _attachments(draft) == {
        "photo.jpg": ("image/jpeg", big),
        "notes.txt": ("text/plain", small),
    }
    sent = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "send", "to": BOB, "subject": "photo", "body": "here"},
        files=[("attachment", ("photo.jpg", big, "image/jpeg"))],
    )
    assert sent.status_code == 303, sent.text
    (received,) = await _stored(web, BOB, "INBOX")
    assert _attachments(received) == {"photo.jpg": ("image/jpeg", big)}
    (copy,) = await _stored(web, ALICE, "Sent")
    assert _attachments(copy) == {"photo.jpg": ("image/jpeg", big)}


async def test_uploads_over_the_limit_are_refused_by_their_size(web: Web) -> None:
    # a limit small enough that the form itself passes the check of its length first
    config = web.service.config
    limit = 100_000
    web.service.config = dataclasses.replace(
        config, delivery=dataclasses.replace(config.delivery, max_message_size=limit)
    )
    await web.login()
    token = await web.csrf("/compose")
    half = b"x" * (limit // 2 + 1)
    answer = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "save", "to": BOB, "subject": "too big"},
        files=[("attachment", ("a", half, "a/b")), ("attachment", ("b", half, "a/b"))],
    )
    assert answer.status_code == 413
    assert "larger than" in answer.text
    assert await _stored(web, ALICE, "Drafts") == []
