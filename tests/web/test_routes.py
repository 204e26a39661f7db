"""Every webmail route: login required, CSRF required on POST, another account's ids refused."""

from __future__ import annotations

import re

import pytest
from tests.web.conftest import ALICE, BOB, PASSWORD, Web

from pobox.web.app import CSP

MESSAGE = (
    b"From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: Lunch?\r\n"
    b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <lunch@example.net>\r\n\r\n"
    b"Shall we?\r\n"
)


async def test_pages_need_a_login(web: Web) -> None:
    inbox = await web.folder_id(ALICE, "INBOX")
    for path in ("/", f"/f/{inbox}", f"/m/{inbox}/1", "/compose", "/settings", "/folders"):
        response = await web.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next="), path
    assert (await web.client.get("/events")).status_code == 401


async def test_login_sets_a_strict_session_cookie_and_rotates_it(web: Web) -> None:
    response = await web.login()
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "pobox_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http in this test; https sets Secure
    first = web.client.cookies["pobox_session"]
    await web.login()
    second = web.client.cookies["pobox_session"]
    assert second != first
    # the old id is gone from the store: it logs nobody in
    assert await web.app.state.sessions.find(first) is None
    page = await web.client.get("/", follow_redirects=True)
    assert page.status_code == 200 and ALICE in page.text


async def test_the_session_id_is_stored_only_as_a_hash(web: Web) -> None:
    await web.login()
    session_id = web.client.cookies["pobox_session"]
    from pobox.service.websessions import session_hash

    assert await web.service.store.web_session_get(session_id) is None
    assert await web.service.store.web_session_get(session_hash(session_id)) is not None


async def test_a_wrong_password_is_refused_and_a_stale_form_too(web: Web) -> None:
    response = await web.login(password="wrong")
    assert response.status_code == 401
    assert "Wrong address or password" in response.text
    assert "pobox_session" not in web.client.cookies
    # no login token (no form was fetched): refused before the password is looked at
    response = await web.client.post(
        "/login", data={"csrf": "x", "address": ALICE, "password": PASSWORD}
    )
    assert response.status_code == 403


async def test_a_login_from_another_site_is_refused(web: Web) -> None:
    form = await web.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    response = await web.client.post(
        "/login",
        data={"csrf": token.group(1), "address": ALICE, "password": PASSWORD},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "pobox_session" not in web.client.cookies


async def test_pages_carry_a_strict_content_security_policy(web: Web) -> None:
    await web.login()
    page = await web.client.get("/", follow_redirects=True)
    assert page.headers["content-security-policy"] == CSP
    assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text  # only <script src=…>
    assert not re.search(r"<[^>]*\son[a-z]+=", page.text)  # no handler attributes


async def test_every_post_needs_the_csrf_token(web: Web) -> None:
    await web.deliver(ALICE, MESSAGE)
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    trash = await web.folder_id(ALICE, "Trash")
    posts = {
        "/logout": {},
        "/logout-everywhere": {},
        f"/f/{inbox}/act": {"action": "delete", "uid": "1"},
        "/undo": {"src": str(inbox), "dst": str(trash), "uids": "1"},
        "/compose": {"action": "save", "to": BOB, "subject": "x", "body": "y"},
        "/settings": {"retention": "keep"},
        "/folders": {"action": "create", "name": "Sneaky"},
    }
    for path, data in posts.items():
        missing = await web.client.post(path, data=data)
        wrong = await web.client.post(path, data={**data, "csrf": "0" * 64})
        assert missing.status_code == 403, path
        assert wrong.status_code == 403, path
    # nothing happened: the message is still in the INBOX, still logged in
    page = await web.client.get(f"/f/{inbox}")
    assert page.status_code == 200 and "Lunch?" in page.text


async def test_a_post_from_another_origin_is_refused_even_with_the_token(web: Web) -> None:
    await web.deliver(ALICE, MESSAGE)
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    token = await web.csrf()
    response = await web.client.post(
        f"/f/{inbox}/act",
        data={"csrf": token, "action": "delete", "uid": "1"},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "Lunch?" in (await web.client.get(f"/f/{inbox}")).text


async def test_another_accounts_ids_are_refused_everywhere(web: Web) -> None:
    await web.deliver(BOB, MESSAGE.replace(b"Lunch?", b"Bob's secret"))
    await web.login(ALICE)
    bob_inbox = await web.folder_id(BOB, "INBOX")
    alice_inbox = await web.folder_id(ALICE, "INBOX")
    gets = [
        f"/f/{bob_inbox}",
        f"/m/{bob_inbox}/1",
        f"/m/{bob_inbox}/1/body",
        f"/m/{bob_inbox}/1/part/0",
        f"/m/{bob_inbox}/1/source",
        f"/compose?reply={bob_inbox}:1&mode=reply",
        f"/compose?reply={bob_inbox}:1&mode=forward",
        f"/compose?draft={bob_inbox}:1",
    ]
    for path in gets:
        response = await web.client.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.text, path
    token = await web.csrf()
    posts = [
        (f"/f/{bob_inbox}/act", {"action": "delete", "uid": "1"}),
        (f"/f/{bob_inbox}/act", {"action": "seen", "uid": "1"}),
        (f"/f/{alice_inbox}/act", {"action": "move", "uid": "1", "dest": str(bob_inbox)}),
        ("/undo", {"src": str(alice_inbox), "dst": str(bob_inbox), "uids": "1"}),
        ("/undo", {"src": str(bob_inbox), "dst": str(alice_inbox), "uids": "1"}),
        (
            "/compose",
            {"action": "save", "mode": "forward", "source": f"{bob_inbox}:1", "to": ALICE},
        ),
    ]
    for path, data in posts:
        response = await web.client.post(path, data={**data, "csrf": token})
        assert response.status_code == 404, (path, data)
    # Bob's message is untouched: unread, in his INBOX
    bob = await web.service.accounts.require(BOB)
    inbox = await web.service.store.get_mailbox(bob.id, "INBOX")
    assert inbox is not None
    (meta,) = await web.service.store.list_messages(inbox.id)
    assert meta.flags == frozenset()


async def test_log_out_and_log_out_everywhere(web: Web) -> None:
    await web.login()
    async with web.other_client() as second:
        await web.login(client=second)
        assert (await second.get("/settings")).status_code == 200
        token = await web.csrf()
        response = await web.client.post("/logout-everywhere", data={"csrf": token})
        assert response.status_code == 303
        assert (await second.get("/settings")).status_code == 303  # to the login page
    assert (await web.client.get("/settings")).status_code == 303
    await web.login()
    token = await web.csrf()
    assert (await web.client.post("/logout", data={"csrf": token})).status_code == 303
    assert (await web.client.get("/settings")).status_code == 303


async def test_an_idle_session_runs_out(web: Web) -> None:
    await web.login()
    sessions = web.app.state.sessions
    real = sessions.clock
    sessions.clock = lambda: real() + web.service.config.web.session_idle + 1
    try:
        assert (await web.client.get("/settings")).status_code == 303
    finally:
        sessions.clock = real


async def test_a_session_runs_out_at_session_max_however_busy(web: Web) -> None:
    await web.login()
    sessions = web.app.state.sessions
    real = sessions.clock
    start = real()
    step = web.service.config.web.session_idle // 2
    now = start
    sessions.clock = lambda: now
    try:
        while now + step - start < web.service.config.web.session_max - 1:
            now += step
            assert (await web.client.get("/settings")).status_code == 200
        now = start + web.service.config.web.session_max + 1
        assert (await web.client.get("/settings")).status_code == 303
    finally:
        sessions.clock = real


@pytest.mark.parametrize("path", ["/f/abc", "/m/1/x", "/nothing"])
async def test_unknown_paths_are_404_pages_not_tracebacks(web: Web, path: str) -> None:
    await web.login()
    response = await web.client.get(path)
    assert response.status_code == 404
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "/\t/evil.example/", "/\\evil.example", "\n//x"],
)
async def test_the_login_redirect_stays_on_this_site(web: Web, target: str) -> None:
    form = await web.client.get("/login", params={"next": target})
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    response = await web.client.post(
        "/login",
        data={"csrf": token.group(1), "address": ALICE, "password": PASSWORD, "next": target},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
