"""Folders in the webmail: create, rename, delete; the quota bar."""

from __future__ import annotations

import re

from tests.web.conftest import ALICE, BOB, PASSWORD, Web


async def names(web: Web, address: str) -> list[str]:
    account = await web.service.accounts.require(address)
    return sorted(m.name for m in await web.service.store.list_mailboxes(account.id))


async def test_create_rename_and_delete_a_folder(web: Web) -> None:
    await web.login()
    token = await web.csrf("/folders")
    response = await web.client.post(
        "/folders", data={"csrf": token, "action": "create", "name": "Projects/2027"}
    )
    assert response.status_code == 303
    assert {"Projects", "Projects/2027"} <= set(await names(web, ALICE))
    page = await web.client.get(response.headers["location"])
    assert "Projects/2027 created" in page.text
    assert ">Projects/2027</a>" in page.text  # in the side list too
    folder = await web.folder_id(ALICE, "Projects/2027")
    response = await web.client.post(
        "/folders", data={"csrf": token, "action": "rename", "folder": str(folder), "name": "Done"}
    )
    assert response.status_code == 303
    assert "Done" in await names(web, ALICE) and "Projects/2027" not in await names(web, ALICE)
    response = await web.client.post(
        "/folders", data={"csrf": token, "action": "delete", "folder": str(folder)}
    )
    assert response.status_code == 303
    assert "Done" not in await names(web, ALICE)


async def test_what_cannot_be_done_to_folders_is_said_on_the_page(web: Web) -> None:
    await web.deliver(ALICE, b"Subject: keep\r\n\r\nx\r\n")
    await web.login()
    token = await web.csrf("/folders")
    inbox = await web.folder_id(ALICE, "INBOX")
    trash = await web.folder_id(ALICE, "Trash")
    cases = [
        ({"action": "delete", "folder": str(inbox)}, "INBOX cannot be deleted"),
        ({"action": "delete", "folder": str(trash)}, "Trash cannot be deleted"),
        ({"action": "rename", "folder": str(trash), "name": "Bin"}, "Trash keeps its name"),
        ({"action": "create", "name": "Trash"}, "already exists"),
        ({"action": "create", "name": ""}, "needs a name"),
    ]
    for data, text in cases:
        response = await web.client.post("/folders", data={"csrf": token, **data})
        assert response.status_code in (400, 403), data
        assert text in response.text, (data, response.text)
    await web.client.post("/folders", data={"csrf": token, "action": "create", "name": "Full"})
    full = await web.folder_id(ALICE, "Full")
    await web.client.post(
        f"/f/{inbox}/act", data={"csrf": token, "action": "move", "uid": "1", "dest": str(full)}
    )
    response = await web.client.post(
        "/folders", data={"csrf": token, "action": "delete", "folder": str(full)}
    )
    assert "is not empty" in response.text
    assert "Full" in await names(web, ALICE)


async def test_another_accounts_folders_cannot_be_renamed_or_deleted(web: Web) -> None:
    bob_folder = await web.service.store.create_mailbox(
        (await web.service.accounts.require(BOB)).id, "Private"
    )
    await web.login()
    token = await web.csrf("/folders")
    for data in (
        {"action": "rename", "folder": str(bob_folder.id), "name": "Mine"},
        {"action": "delete", "folder": str(bob_folder.id)},
    ):
        response = await web.client.post("/folders", data={"csrf": token, **data})
        assert response.status_code == 404
    assert "Private" in await names(web, BOB)
    missing = await web.client.post("/folders", data={"action": "create", "name": "X"})
    assert missing.status_code == 403  # no CSRF token


async def test_the_quota_bar_shows_use_against_the_limit(web: Web) -> None:
    await web.login(BOB)
    page = await web.client.get("/folders")
    assert "quota-meter" not in page.text  # no limit, no bar
    account = await web.service.accounts.require(ALICE)
    await web.service.store.set_account_setting(account.id, "quota.storage", "1048576")
    await web.deliver(ALICE, b"Subject: some\r\n\r\n" + b"x" * 2000 + b"\r\n")
    await web.login(ALICE)
    page = await web.client.get("/folders")
    assert re.search(r'<meter id="quota-meter" min="0" max="1048576"', page.text), page.text
    assert "of 1.0 MB used" in page.text


async def test_app_passwords_in_settings(web: Web) -> None:
    await web.login()
    token = await web.csrf()
    wrong = await web.client.post(
        "/settings/app-passwords",
        data={"csrf": token, "action": "add", "new_label": "Phone", "password": "nope"},
    )
    assert wrong.status_code == 400 and "not the account" in wrong.text
    made = await web.client.post(
        "/settings/app-passwords",
        data={"csrf": token, "action": "add", "new_label": "Phone", "password": PASSWORD},
    )
    assert made.status_code == 200
    shown = re.search(r'<code id="new-app-password">([^<]+)</code>', made.text)
    assert shown is not None
    # it logs in (the webmail too), and the list names it, never its password
    async with web.other_client() as other:
        assert (await web.login(password=shown.group(1), client=other)).status_code == 303
    page = await web.client.get("/settings")
    assert "<td>Phone</td>" in page.text and shown.group(1) not in page.text
    # an app password cannot make another one
    async with web.other_client() as other:
        await web.login(password=shown.group(1), client=other)
        other_token = await web.csrf(client=other)
        refused = await other.post(
            "/settings/app-passwords",
            data={"csrf": other_token, "action": "add", "new_label": "Laptop",
                  "password": shown.group(1)},
        )  # fmt: skip
        assert refused.status_code == 400
    deleted = await web.client.post(
        "/settings/app-passwords", data={"csrf": token, "delete": "Phone"}
    )
    assert deleted.status_code == 200 and "deleted" in deleted.text
    assert await web.service.auth.authenticate(ALICE, shown.group(1)) is None
    missing = await web.client.post(
        "/settings/app-passwords", data={"csrf": token, "delete": "Phone"}
    )
    assert missing.status_code == 404
    no_token = await web.client.post("/settings/app-passwords", data={"delete": "x"})
    assert no_token.status_code == 403


async def test_deleting_an_app_password_ends_the_web_sessions_it_opened(web: Web) -> None:
    from pobox.service.logins import Logins

    made = await Logins(web.service.store).add(ALICE, "Tablet")
    await web.login()  # with the account's password
    async with web.other_client() as tablet:
        assert (await web.login(password=made.password, client=tablet)).status_code == 303
        assert (await tablet.get("/settings")).status_code == 200
        await Logins(web.service.store).delete(ALICE, "Tablet")
        assert (await tablet.get("/settings")).status_code == 303  # to the login page
    assert (await web.client.get("/settings")).status_code == 200  # the other session goes on


async def test_folders_shared_with_the_user_follow_their_rights(web: Web) -> None:
    """Another account's folder shared with the user (docs/sharing.md) is in the folder list
    under Shared/owner/Folder and does what the rights say; unshared, it is not there at all."""
    service = web.service
    bob = await service.accounts.require(BOB)
    team = await service.store.create_mailbox(bob.id, "Team")
    await web.deliver(BOB, b"From: carol@example.net\r\nSubject: plan\r\n\r\nthe plan\r\n")
    inbox = await service.store.get_mailbox(bob.id, "INBOX")
    assert inbox is not None
    await service.index.copy(inbox.id, [(await service.store.list_messages(inbox.id))[0].uid],
                             team.id)  # fmt: skip
    await web.login()
    page = await web.client.get(f"/f/{team.id}")
    assert page.status_code == 404  # not shared: it does not exist for alice
    await service.acl.set_acl(bob, "Team", ALICE, "lr")
    home = await web.client.get("/folders")
    assert f"Shared/{BOB}/Team" in home.text
    page = await web.client.get(f"/f/{team.id}")
    assert page.status_code == 200 and f"<h1>Shared/{BOB}/Team" in page.text
    message = await web.client.get(f"/m/{team.id}/1")
    assert message.status_code == 200 and "plan" in message.text
    token = await web.csrf(f"/f/{team.id}")
    for action in ("seen", "flag", "delete"):  # s, w and t+e are missing
        refused = await web.client.post(
            f"/f/{team.id}/act", data={"csrf": token, "action": action, "uid": "1"}
        )
        assert refused.status_code == 403, (action, refused.status_code)
    (meta,) = await service.store.list_messages(team.id)
    assert meta.flags == frozenset()
    await service.acl.set_acl(bob, "Team", ALICE, "+s")
    done = await web.client.post(
        f"/f/{team.id}/act", data={"csrf": token, "action": "seen", "uid": "1"}
    )
    assert done.status_code in (200, 303), done.text
    (meta,) = await service.store.list_messages(team.id)
    assert meta.flags == frozenset({"\\Seen"})  # shared flags: bob sees it read too
    await service.acl.delete_acl(bob, "Team", ALICE)
    assert (await web.client.get(f"/f/{team.id}")).status_code == 404
    assert f"Shared/{BOB}/Team" not in (await web.client.get("/folders")).text
