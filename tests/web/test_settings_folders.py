"""Settings for folder policies (docs/policies.md) and for sharing folders (docs/sharing.md) in
the webmail: stored through the service, checked, refused for other accounts' folders and
without the CSRF token, on both backends."""

from __future__ import annotations

import re

from tests.web.conftest import ALICE, BOB, Web

from pobox.store.api import Account


async def _account(web: Web, address: str) -> Account:
    return await web.service.accounts.require(address)


async def _policies(web: Web, address: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Every folder's effective settings: name -> key -> (value, where from)."""
    effective = await web.service.folder_policies.effective(await _account(web, address))
    return {
        e.mailbox.name: {k: (s.value, s.source) for k, s in e.settings.items()} for e in effective
    }


async def test_folder_policies_are_shown_and_set(web: Web) -> None:
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    trash = await web.folder_id(ALICE, "Trash")
    page = await web.client.get("/settings")
    assert page.status_code == 200
    # the server's Trash rule is shown where it applies, as what applies now
    assert re.search(r"now 30d \(server \\Trash\)", page.text)
    assert f'id="policy-{inbox}"' in page.text
    token = await web.csrf()
    saved = await web.client.post(
        "/settings/policies",
        data={"csrf": token, "folder": str(inbox), "expunge-after": "90D", "archive-after": ""},
    )
    assert saved.status_code == 200
    assert "The policy of INBOX is saved." in saved.text
    assert (await _policies(web, ALICE))["INBOX"] == {"expunge-after": ("90d", "folder")}
    assert 'value="90d"' in saved.text
    # off overrides the server's rule; an archive rule beside it
    await web.client.post(
        "/settings/policies",
        data={"csrf": token, "folder": str(trash), "expunge-after": "off", "archive-after": "2w"},
    )
    assert (await _policies(web, ALICE))["Trash"] == {
        "expunge-after": ("off", "folder"),
        "archive-after": ("2w", "folder"),
    }
    # empty takes the folder's own setting away: the server's applies again
    await web.client.post(
        "/settings/policies",
        data={"csrf": token, "folder": str(trash), "expunge-after": "", "archive-after": "2w"},
    )
    assert (await _policies(web, ALICE))["Trash"]["expunge-after"] == ("30d", "server \\Trash")


async def test_a_bad_policy_is_refused_and_nothing_is_stored(web: Web) -> None:
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    token = await web.csrf()
    for value in ("soon", "30 days", "-3d", "<script>"):
        answer = await web.client.post(
            "/settings/policies",
            data={"csrf": token, "folder": str(inbox), "expunge-after": value, "archive-after": ""},
        )
        assert answer.status_code == 400, value
        assert 'role="alert"' in answer.text
        assert "<script>" not in answer.text
    bad_folder = await web.client.post(
        "/settings/policies", data={"csrf": token, "folder": "x", "expunge-after": "1d"}
    )
    assert bad_folder.status_code == 400
    assert (await _policies(web, ALICE))["INBOX"] == {}


async def test_policies_and_sharing_refuse_other_accounts_folders(web: Web) -> None:
    await web.login(ALICE)
    bob_inbox = await web.folder_id(BOB, "INBOX")
    token = await web.csrf()
    posts = [
        ("/settings/policies", {"folder": str(bob_inbox), "expunge-after": "1h"}),
        ("/settings/policies", {"folder": "999999", "expunge-after": "1h"}),
        (
            "/settings/sharing",
            {"folder": str(bob_inbox), "action": "share", "identifier": ALICE, "right": "l"},
        ),
        ("/settings/sharing", {"folder": str(bob_inbox), "action": "unshare", "identifier": ALICE}),
    ]
    for path, data in posts:
        answer = await web.client.post(path, data={**data, "csrf": token})
        assert answer.status_code == 404, (path, data)
    assert (await _policies(web, BOB))["INBOX"] == {}
    bob = await _account(web, BOB)
    inbox = await web.service.store.get_mailbox(bob.id, "INBOX")
    assert inbox is not None
    assert await web.service.acl.acl_of(inbox) == []
    # and without the token nothing is done either
    mine = await web.folder_id(ALICE, "INBOX")
    for path, data in [
        ("/settings/policies", {"folder": str(mine), "expunge-after": "1h"}),
        ("/settings/sharing", {"folder": str(mine), "action": "share", "identifier": BOB}),
    ]:
        assert (await web.client.post(path, data=data)).status_code == 403
        wrong = await web.client.post(path, data={**data, "csrf": "0" * 64})
        assert wrong.status_code == 403
    assert (await _policies(web, ALICE))["INBOX"] == {}


async def test_sharing_a_folder_from_the_settings(web: Web) -> None:
    alice = await _account(web, ALICE)
    projects = await web.service.store.create_mailbox(alice.id, "Projects")
    await web.login(ALICE)
    page = await web.client.get("/settings")
    assert "No folder is shared." in page.text
    assert f'<option value="{projects.id}">Projects</option>' in page.text
    token = await web.csrf()
    shared = await web.client.post(
        "/settings/sharing",
        data={
            "csrf": token,
            "folder": str(projects.id),
            "action": "share",
            "identifier": "Bob@Example.org",
            "right": ["l", "r", "s"],
        },
    )
    assert shared.status_code == 200
    assert "Projects is shared with Bob@Example.org." in shared.text
    assert await web.service.acl.acl_of(projects) == [(BOB, "lrs")]
    assert re.search(
        r"<td>Projects</td><td>bob@example.org</td><td><code[^>]*>lrs</code>", shared.text
    )
    # Bob sees it among his folders, and may not change its sharing (no a right)
    bob_client = web.other_client()
    async with bob_client:
        await web.login(BOB, client=bob_client)
        home = await bob_client.get(f"/f/{projects.id}")
        assert home.status_code == 200
        assert "Shared/alice@example.org/Projects" in home.text
        bob_page = await bob_client.get("/settings")
        assert f'<option value="{projects.id}">' not in bob_page.text
        bob_token = await web.csrf(client=bob_client)
        refused = await bob_client.post(
            "/settings/sharing",
            data={
                "csrf": bob_token,
                "folder": str(projects.id),
                "action": "share",
                "identifier": BOB,
                "right": list("lrswikxtea"),
            },
        )
        assert refused.status_code == 403
        assert await web.service.acl.acl_of(projects) == [(BOB, "lrs")]
        # with the a right he may, and the folder is listed in his settings
        await web.service.acl.set_acl(alice, "Projects", BOB, "lra")
        bob_page = await bob_client.get("/settings")
        assert f'<option value="{projects.id}">Shared/alice@example.org/Projects</option>' in (
            bob_page.text
        )
        own = await bob_client.post(
            "/settings/sharing",
            data={
                "csrf": bob_token,
                "folder": str(projects.id),
                "action": "share",
                "identifier": ALICE,
                "right": "l",
            },
        )
        assert own.status_code == 400  # the owner's rights are fixed
    # rights replaced, then none: the entry goes
    await web.client.post(
        "/settings/sharing",
        data={
            "csrf": token,
            "folder": str(projects.id),
            "action": "share",
            "identifier": BOB,
            "right": ["l", "r"],
        },
    )
    assert await web.service.acl.acl_of(projects) == [(BOB, "lr")]
    gone = await web.client.post(
        "/settings/sharing",
        data={"csrf": token, "folder": str(projects.id), "action": "unshare", "identifier": BOB},
    )
    assert gone.status_code == 200
    assert "Projects is no longer shared with bob@example.org." in gone.text
    assert await web.service.acl.acl_of(projects) == []


async def test_sharing_refuses_what_it_cannot_store(web: Web) -> None:
    alice = await _account(web, ALICE)
    projects = await web.service.store.create_mailbox(alice.id, "Projects")
    await web.login(ALICE)
    token = await web.csrf()
    cases = [
        {"identifier": "nobody@example.org", "right": "l"},  # no such account
        {"identifier": "anyone", "right": "l"},  # not allowed by this server's [acl]
        {"identifier": "", "right": "l"},
        {"identifier": "two words", "right": "l"},
        {"identifier": BOB, "right": "z"},  # not a right
        {"identifier": BOB, "right": "lr<b>"},
        {"identifier": ALICE, "right": "l"},  # the owner's own rights
    ]
    for case in cases:
        answer = await web.client.post(
            "/settings/sharing",
            data={"csrf": token, "folder": str(projects.id), "action": "share", **case},
        )
        assert answer.status_code == 400, case
        assert 'role="alert"' in answer.text
        assert "<b>" not in answer.text
    unknown = await web.client.post(
        "/settings/sharing",
        data={"csrf": token, "folder": str(projects.id), "action": "grant", "identifier": BOB},
    )
    assert unknown.status_code == 400
    assert await web.service.acl.acl_of(projects) == []
