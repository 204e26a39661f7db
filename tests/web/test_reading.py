"""Lists, reading, attachments, actions, search, writing and settings through the webmail."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message

from tests.web.conftest import ALICE, BOB, Web

from pobox.store.api import FlagOp, MailboxId, Uid


def plain(subject: str, body: str = "Hello", date: str = "Mon, 7 Dec 2026 10:00:00 +0000") -> bytes:
    return (
        f"From: Carol <carol@example.net>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\nMessage-ID: <{abs(hash(subject))}@example.net>\r\n\r\n{body}\r\n"
    ).encode()


WITH_ATTACHMENT = (
    b"From: carol@example.net\r\nTo: alice@example.org\r\nSubject: Report\r\n"
    b"Date: Tue, 8 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
    b"--b1\r\nContent-Type: application/pdf; name=report.pdf\r\n"
    b"Content-Disposition: attachment; filename=report.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--b1--\r\n"
)


async def test_the_list_is_newest_first_with_marks_and_pages(web: Web) -> None:
    for n in range(60):
        await web.deliver(
            ALICE, plain(f"number {n:02}", date=f"Mon, 7 Dec 2026 10:{n:02}:00 +0000")
        )
    await web.deliver(ALICE, WITH_ATTACHMENT)
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    await web.service.index.set_flags(
        MailboxId(inbox), [Uid(2)], FlagOp.ADD, frozenset({"\\Flagged"})
    )
    page = await web.client.get(f"/f/{inbox}")
    assert page.status_code == 200
    subjects = re.findall(r'class="subject"><a [^>]*>([^<]*)<', page.text)
    assert subjects[0] == "Report"  # the newest Date: first
    assert subjects[1:4] == ["number 59", "number 58", "number 57"]
    assert len(subjects) == 50
    assert "Page 1 of 2" in page.text and "61 messages" in page.text
    assert re.search(r'<tr class="unseen" data-uid="61">', page.text)
    assert "Has attachments" in page.text
    second = await web.client.get(f"/f/{inbox}?page=2")
    subjects = re.findall(r'class="subject"><a [^>]*>([^<]*)<', second.text)
    assert subjects[-1] == "number 00"
    assert re.search(r'<tr class="unseen flagged" data-uid="2">', second.text)
    by_subject = await web.client.get(f"/f/{inbox}?sort=subject&rev=0")
    subjects = re.findall(r'class="subject"><a [^>]*>([^<]*)<', by_subject.text)
    assert subjects[:2] == ["number 00", "number 01"]
    # the folder list counts unread mail
    assert re.search(r'<span class="unread" title="61 unread">61</span>', page.text)
    assert (await web.client.get(f"/f/{inbox}?sort=nonsense")).status_code == 400


async def test_reading_decodes_headers_marks_seen_and_lists_attachments(web: Web) -> None:
    await web.deliver(ALICE, WITH_ATTACHMENT)
    await web.deliver(ALICE, plain("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Viele Grüße".encode().decode()))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    page = await web.client.get(f"/m/{inbox}/2")
    assert "Grüße" in page.text
    assert "Viele Grüße" in page.text
    listed = await web.client.get(f"/f/{inbox}")
    assert not re.search(r'<tr class="unseen[^"]*" data-uid="2">', listed.text)
    page = await web.client.get(f"/m/{inbox}/1")
    assert "See attached." in page.text
    link = re.search(r'href="(/m/\d+/1/part/(\d+))" download>report.pdf<', page.text)
    assert link is not None
    download = await web.client.get(link.group(1))
    assert download.status_code == 200
    assert download.content == b"%PDF-1.4\n"
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"].startswith('attachment; filename="report.pdf"')
    assert "sandbox" in download.headers["content-security-policy"]
    source = await web.client.get(f"/m/{inbox}/1/source")
    assert source.headers["content-type"].startswith("text/plain")
    assert source.content.endswith(WITH_ATTACHMENT)


async def test_flags_move_delete_undo_junk_and_empty(web: Web) -> None:
    for n in range(3):
        await web.deliver(ALICE, plain(f"m{n}"))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    trash = await web.folder_id(ALICE, "Trash")
    archive = await web.folder_id(ALICE, "Archive")
    junk = await web.folder_id(ALICE, "Junk")
    token = await web.csrf(f"/f/{inbox}")

    async def act(folder: int, action: str, *uids: int, **extra: str) -> str:
        response = await web.client.post(
            f"/f/{folder}/act",
            data={"csrf": token, "action": action, "uid": [str(u) for u in uids], **extra},
        )
        assert response.status_code == 303, response.text
        return str(response.headers["location"])

    async def uids(folder: int) -> list[int]:
        return [m.uid for m in await web.service.store.list_messages(folder)]  # type: ignore[arg-type]

    async def flags(folder: int, uid: int) -> frozenset[str]:
        (meta,) = await web.service.store.get_messages(folder, [uid])  # type: ignore[arg-type, list-item]
        return meta.flags

    await act(inbox, "flag", 1)
    await act(inbox, "seen", 1, 2)
    assert await flags(inbox, 1) == {"\\Flagged", "\\Seen"}
    await act(inbox, "unflag", 1)
    await act(inbox, "unseen", 2)
    assert await flags(inbox, 1) == {"\\Seen"} and await flags(inbox, 2) == frozenset()
    await act(inbox, "move", 3, dest=str(archive))
    assert await uids(inbox) == [1, 2] and await uids(archive) == [1]
    location = await act(inbox, "delete", 1, 2)
    assert await uids(inbox) == [] and await uids(trash) == [1, 2]
    page = await web.client.get(location)
    undo = re.search(r'name="uids" value="([^"]+)"', page.text)
    assert undo is not None and "2 moved" in page.text
    response = await web.client.post(
        "/undo", data={"csrf": token, "src": str(inbox), "dst": str(trash), "uids": undo.group(1)}
    )
    assert response.status_code == 303
    assert await uids(inbox) == [4, 5] and await uids(trash) == []  # new UIDs, as IMAP MOVE
    await act(inbox, "junk", 4)
    assert await uids(junk) == [1]
    await act(inbox, "delete", 5)
    await act(trash, "delete", 3)  # in Trash: gone for good
    assert await uids(trash) == []
    await act(junk, "empty")
    assert await uids(junk) == []
    response = await web.client.post(f"/f/{inbox}/act", data={"csrf": token, "action": "empty"})
    assert response.status_code == 403  # only Trash and Junk are emptied


async def test_search_through_the_server_search(web: Web) -> None:
    await web.deliver(ALICE, plain("Quarterly numbers", "revenue went up"))
    await web.deliver(ALICE, plain("Lunch", "pizza today"))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    page = await web.client.get(f"/f/{inbox}?q=pizza&in=body")
    assert "Lunch" in page.text and "Quarterly" not in page.text
    page = await web.client.get(f"/f/{inbox}?q=quarterly&in=subject")
    assert "Quarterly" in page.text and "Lunch" not in page.text
    page = await web.client.get(f"/f/{inbox}?q=nothing-like-it")
    assert "No messages found" in page.text
    assert (await web.client.get(f"/f/{inbox}?q=x&in=bogus")).status_code == 400


def _parse(data: bytes) -> Message:
    return message_from_bytes(data)


async def test_send_reply_forward_and_drafts(web: Web) -> None:
    from pobox.service.domains import ServedDomains
    from pobox.service.submission import Submission

    service = web.service
    web.app.state.webmail.submission = Submission(
        service.store, service.accounts, service.delivery, ServedDomains(service.store, ()),
        service.config.hostname,
    )  # fmt: skip
    await web.deliver(ALICE, plain("Question", "Are you there?"))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    token = await web.csrf("/compose")
    response = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "send", "to": BOB, "subject": "Hi Bob", "body": "Hello"},
        files={"attachment": ("notes.txt", b"some notes", "text/plain")},
    )
    assert response.status_code == 303, response.text
    bob = await service.accounts.require(BOB)
    bob_inbox = await service.store.get_mailbox(bob.id, "INBOX")
    assert bob_inbox is not None
    (meta,) = await service.store.list_messages(bob_inbox.id)
    content = await service.store.open_message(bob_inbox.id, meta.uid)
    sent = _parse(content.read(0, content.size))
    content.close()
    assert sent["Subject"] == "Hi Bob" and sent["From"] == ALICE
    parts = [p.get_filename() for p in sent.walk()]
    assert "notes.txt" in parts
    sent_folder = await web.folder_id(ALICE, "Sent")
    (copy,) = await service.store.list_messages(sent_folder)  # type: ignore[arg-type]
    assert "\\Seen" in copy.flags

    form = await web.client.get(f"/compose?reply={inbox}:1&mode=reply")
    assert 'value="Re: Question"' in form.text
    assert "&gt; Are you there?" in form.text
    fields = dict(
        re.findall(r'name="(in_reply_to|references|source|mode|to)" value="([^"]*)"', form.text)
    )
    response = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "send", "subject": "Re: Question", "body": "Yes", **fields,
              "to": BOB},
    )  # fmt: skip
    assert response.status_code == 303, response.text
    messages = await service.store.list_messages(bob_inbox.id)
    content = await service.store.open_message(bob_inbox.id, messages[-1].uid)
    reply = _parse(content.read(0, content.size))
    content.close()
    assert reply["In-Reply-To"] == fields["in_reply_to"] != ""
    (original,) = await service.store.get_messages(inbox, [1])  # type: ignore[arg-type, list-item]
    assert "\\Answered" in original.flags

    form = await web.client.get(f"/compose?reply={inbox}:1&mode=forward")
    assert 'value="Fwd: Question"' in form.text
    response = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "send", "to": BOB, "subject": "Fwd: Question",
              "mode": "forward", "source": f"{inbox}:1", "body": "FYI"},
    )  # fmt: skip
    assert response.status_code == 303
    messages = await service.store.list_messages(bob_inbox.id)
    content = await service.store.open_message(bob_inbox.id, messages[-1].uid)
    forwarded = _parse(content.read(0, content.size))
    content.close()
    (attached,) = [p for p in forwarded.walk() if p.get_content_type() == "message/rfc822"]
    assert attached["Content-Transfer-Encoding"] in (None, "7bit", "8bit")
    assert attached.get_payload(0)["Subject"] == "Question"

    drafts = await web.folder_id(ALICE, "Drafts")
    response = await web.client.post(
        "/compose", data={"csrf": token, "action": "save", "to": BOB, "subject": "Later"}
    )
    assert response.status_code == 303
    (draft,) = await service.store.list_messages(drafts)  # type: ignore[arg-type]
    assert {"\\Draft", "\\Seen"} <= draft.flags
    form = await web.client.get(f"/compose?draft={drafts}:{draft.uid}")
    assert 'value="Later"' in form.text
    response = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "send", "to": BOB, "subject": "Later",
              "draft": f"{drafts}:{draft.uid}"},
    )  # fmt: skip
    assert response.status_code == 303
    assert await service.store.list_messages(drafts) == []  # type: ignore[arg-type]
    # a bad recipient is a message on the form, not a traceback
    response = await web.client.post(
        "/compose", data={"csrf": token, "action": "send", "to": "not an address", "subject": "x"}
    )
    assert response.status_code == 400 and "is not a mail address" in response.text


async def test_settings_show_and_change_the_pop3_retention(web: Web) -> None:
    await web.login()
    page = await web.client.get("/settings")
    assert "Now: delete" in page.text
    token = await web.csrf()
    response = await web.client.post(
        "/settings", data={"csrf": token, "retention": "keep-days", "days": "14"}
    )
    assert response.status_code == 200 and "Now: keep-days:14" in response.text
    account = await web.service.accounts.require(ALICE)
    assert account.settings["pop3.retention"] == "keep-days:14"
    response = await web.client.post(
        "/settings", data={"csrf": token, "retention": "keep-days", "days": "0"}
    )
    assert response.status_code == 400


async def test_messages_with_the_same_date_list_the_newest_first(web: Web) -> None:
    for n in range(3):
        await web.deliver(ALICE, plain(f"same {n}"))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    page = await web.client.get(f"/f/{inbox}")
    assert re.findall(r'data-uid="(\d+)"', page.text) == ["3", "2", "1"]
    page = await web.client.get(f"/f/{inbox}?sort=date&rev=0")
    assert re.findall(r'data-uid="(\d+)"', page.text) == ["1", "2", "3"]


async def test_a_forwarded_multipart_message_is_viewable(web: Web) -> None:
    inner = WITH_ATTACHMENT
    outer = (
        b"From: dave@example.net\r\nTo: alice@example.org\r\nSubject: Fwd: Report\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="fw"\r\n\r\n'
        b"--fw\r\nContent-Type: text/plain\r\n\r\nFYI\r\n"
        b"--fw\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        + inner
        + b"\r\n--fw--\r\n"
    )
    await web.deliver(ALICE, outer)
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    page = await web.client.get(f"/m/{inbox}/1")
    view = re.search(r'href="/m/\d+/1\?part=(\d+)">view<', page.text)
    assert view is not None, page.text
    inner_page = await web.client.get(f"/m/{inbox}/1?part={view.group(1)}")
    assert "See attached." in inner_page.text
    assert "report.pdf" in inner_page.text
    link = re.search(r'href="(/m/\d+/1/part/\d+)" download>report.pdf<', inner_page.text)
    assert link is not None
    assert (await web.client.get(link.group(1))).content == b"%PDF-1.4\n"


async def test_search_all_folders(web: Web) -> None:
    await web.deliver(ALICE, plain("Invoice March", "pay by Friday"))
    await web.deliver(ALICE, plain("Invoice April", "pay by Monday"))
    await web.deliver(ALICE, plain("Lunch", "pizza"))
    await web.deliver(BOB, plain("Invoice for Bob", "his own"))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    archive = await web.folder_id(ALICE, "Archive")
    token = await web.csrf(f"/f/{inbox}")
    await web.client.post(
        f"/f/{inbox}/act", data={"csrf": token, "action": "move", "uid": "1", "dest": str(archive)}
    )
    page = await web.client.get(f"/f/{inbox}?q=invoice&in=subject&scope=all")
    assert page.status_code == 200
    assert "2 found" in page.text
    rows = re.findall(r'<a href="/f/\d+">(\w+)</a></td>\s*<td class="from">', page.text)
    assert sorted(rows) == ["Archive", "INBOX"]
    assert "Invoice for Bob" not in page.text and "Lunch" not in page.text
    assert f'href="/m/{archive}/1"' in page.text


async def test_a_form_larger_than_a_message_may_be_is_refused_before_it_is_read(
    web: Web,
) -> None:
    await web.login()
    token = await web.csrf("/compose")
    limit = web.service.config.delivery.max_message_size
    response = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "save", "to": BOB},
        headers={"content-length": str(limit * 2)},
    )
    assert response.status_code == 413
    assert "larger than" in response.text


def reply_to(subject: str, mid: str, parent: str | None, date: str) -> bytes:
    refs = f"In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n" if parent else ""
    return (
        f"From: carol@example.net\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{mid}>\r\n{refs}Date: {date}\r\n\r\nx\r\n"
    ).encode()


async def test_conversations_list_replies_under_their_message(web: Web) -> None:
    await web.deliver(ALICE, reply_to("Plan", "a@x", None, "Mon, 7 Dec 2026 09:00:00 +0000"))
    await web.deliver(ALICE, reply_to("Other", "b@x", None, "Mon, 7 Dec 2026 10:00:00 +0000"))
    await web.deliver(ALICE, reply_to("Re: Plan", "c@x", "a@x", "Mon, 7 Dec 2026 11:00:00 +0000"))
    await web.deliver(
        ALICE, reply_to("Re: Re: Plan", "d@x", "c@x", "Mon, 7 Dec 2026 12:00:00 +0000")
    )
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    page = await web.client.get(f"/f/{inbox}?sort=thread")
    assert page.status_code == 200
    rows = re.findall(r'<td class="subject( depth-\d)?"><a [^>]*>([^<]*)<', page.text)
    # the conversation with the newest message first, its messages in reply order
    assert rows == [("", "Plan"), (" depth-1", "Re: Plan"), (" depth-2", "Re: Re: Plan"),
                    ("", "Other")]  # fmt: skip
    assert 'id="threads-off"' in page.text


async def test_mark_unread_from_the_message_page_stays_unread(web: Web) -> None:
    await web.deliver(ALICE, plain("Later"))
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    await web.client.get(f"/m/{inbox}/1")  # read: \Seen
    token = await web.csrf(f"/m/{inbox}/1")
    response = await web.client.post(
        f"/f/{inbox}/act",
        data={"csrf": token, "action": "unseen", "uid": "1", "back": f"/m/{inbox}/1"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    (meta,) = await web.service.store.get_messages(MailboxId(inbox), [Uid(1)])
    assert "\\Seen" not in meta.flags
    # the page refreshing itself (live updates) does not read it either
    await web.client.get(f"/m/{inbox}/1", headers={"x-requested-with": "live"})
    (meta,) = await web.service.store.get_messages(MailboxId(inbox), [Uid(1)])
    assert "\\Seen" not in meta.flags


async def test_autosave_keeps_one_draft_and_sending_removes_it(web: Web) -> None:
    await web.login()
    token = await web.csrf("/compose")
    drafts = await web.folder_id(ALICE, "Drafts")
    first = await web.client.post(
        "/compose", data={"csrf": token, "action": "autosave", "to": BOB, "subject": "Dra"}
    )
    assert first.status_code == 200
    draft = first.json()["draft"]
    assert draft.startswith(f"{drafts}:")
    second = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "autosave", "to": BOB, "subject": "Draft", "draft": draft},
    )
    metas = await web.service.store.list_messages(MailboxId(drafts))
    assert [f"{drafts}:{m.uid}" for m in metas] == [second.json()["draft"]]
    missing = await web.client.post("/compose", data={"action": "autosave", "subject": "x"})
    assert missing.status_code == 403


async def test_a_draft_in_a_full_account_is_refused(web: Web) -> None:
    """Drafts and copies in Sent count against the quota like any APPEND (docs/quota.md)."""
    await web.service.accounts.set_setting(ALICE, "quota.messages", "1")
    await web.deliver(ALICE, plain("Question", "Are you there?"))  # the one message allowed
    await web.login()
    token = await web.csrf("/compose")
    response = await web.client.post(
        "/compose",
        data={"csrf": token, "action": "save", "to": BOB, "subject": "Later", "body": "..."},
    )
    assert response.status_code == 413, response.text
    drafts = await web.folder_id(ALICE, "Drafts")
    assert await web.service.store.list_messages(drafts) == []  # type: ignore[arg-type]
