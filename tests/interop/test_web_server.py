"""The [web] listener inside `pobox serve`: HTTPS with the [tls] certificate, trusted proxies,
login penalties and blocks shared with the other protocols, nothing secret in the log, and a
prompt shutdown with event streams open."""

from __future__ import annotations

import contextlib
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.helpers.servers import (
    LISTENERS,
    ServerProcess,
    free_port,
    server_process,
    write_config,
)

from pobox.net.tls import generate_certificate

pytestmark = pytest.mark.interop

ALICE = "alice@example.org"
PASSWORD = "web server test"


def login(
    client: httpx.Client, password: str = PASSWORD, headers: dict[str, str] | None = None
) -> httpx.Response:
    form = client.get("/login", headers=headers)
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text
    if headers and "x-forwarded-proto" in headers:
        # the cookie is Secure (the browser spoke https to the proxy): httpx, speaking http to
        # pobox, would keep it back, so it goes by hand, as the proxy would pass it on
        headers = {**headers, "cookie": f"pobox_login={form.cookies['pobox_login']}"}
    return client.post(
        "/login",
        data={"csrf": token.group(1), "address": ALICE, "password": password},
        headers=headers,
    )


def test_https_with_the_tls_certificate_and_a_secure_cookie(tmp_path: Path) -> None:
    cert, key = generate_certificate(tmp_path / "certs")
    extra = f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
    extra += f"[imaps]\nport = {free_port()}\n[pop3s]\nport = {free_port()}\n"
    with server_process(tmp_path, {ALICE: PASSWORD}, extra) as server:
        port = server.ports["web"]
        verify = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verify) as client:
            response = login(client)
            assert response.status_code == 303
            cookie = response.headers["set-cookie"]
            assert "pobox_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
            assert client.get("/", follow_redirects=True).status_code == 200
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the HTTPS port
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)


@contextlib.contextmanager
def trusting_server(tmp: Path, networks: str) -> Iterator[ServerProcess]:
    """A server whose [web] table also has trusted_proxies = *networks*."""
    ports = {name: free_port() for name in LISTENERS}
    config = write_config(tmp / "pobox.toml", tmp / "data", ports)
    text = config.read_text()
    web = f"[web]\nport = {ports['web']}\n"
    config.write_text(text.replace(web, f"{web}trusted_proxies = {networks}\n"))
    server = ServerProcess(tmp / "data", config, ports, tmp / "server.log")
    server.cli("user", "add", ALICE, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_proxy_headers_only_from_trusted_proxies(tmp_path: Path) -> None:
    proxied = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with trusting_server(tmp_path / "a", '["127.0.0.1/32"]') as server:
        base = f"http://127.0.0.1:{server.ports['web']}"
        with httpx.Client(base_url=base) as client:
            assert login(client, "wrong", proxied).status_code == 401
            response = login(client, headers=proxied)
            assert "Secure" in response.headers["set-cookie"]  # the browser used https
        assert "remote=203.0.113.9" in server.log.read_text()
    with server_process(tmp_path / "b", {ALICE: PASSWORD}) as server:  # not trusted: ignored
        base = f"http://127.0.0.1:{server.ports['web']}"
        with httpx.Client(base_url=base) as client:
            assert login(client, "wrong", proxied).status_code == 401
            response = login(client, headers=proxied)
            assert "Secure" not in response.headers["set-cookie"]
        log = server.log.read_text()
        assert "203.0.113.9" not in log and "remote=127.0.0.1" in log


def test_failed_logins_are_penalised_and_blocked_like_imap(tmp_path: Path) -> None:
    extra = "\n[auth]\nmax_failures = 3\npenalty_max = 0.0\nblock_seconds = 600\n"
    with server_process(tmp_path, {ALICE: PASSWORD}, extra) as server:
        base = f"http://127.0.0.1:{server.ports['web']}"
        with httpx.Client(base_url=base) as client:
            for _ in range(3):
                assert login(client, "wrong").status_code == 401
            blocked = login(client)  # the right password, from a blocked address
            assert blocked.status_code == 429
            assert "Too many failed logins" in blocked.text
        listed = server.cli("auth", "blocks").stdout.decode()
        assert "127.0.0.1" in listed or ALICE in listed


def test_no_password_or_session_id_in_the_log(tmp_path: Path) -> None:
    with server_process(tmp_path, {ALICE: PASSWORD}) as server:
        base = f"http://127.0.0.1:{server.ports['web']}"
        with httpx.Client(base_url=base) as client:
            login(client, "a wrong secret")
            login(client)
            session_id = client.cookies["pobox_session"]
            client.get("/", follow_redirects=True)
        log = server.log.read_text()
        assert f"account={ALICE}" in log
        for secret in (PASSWORD, "a wrong secret", session_id):
            assert secret not in log


def _stream(server: ServerProcess, cookies: httpx.Cookies, opened: threading.Event) -> None:
    base = f"http://127.0.0.1:{server.ports['web']}"
    try:
        with (
            httpx.Client(base_url=base, cookies=cookies, timeout=60) as client,
            client.stream("GET", "/events") as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            opened.set()
            for _ in response.iter_bytes():
                pass
    except httpx.HTTPError:
        pass


def test_sigterm_ends_open_event_streams(tmp_path: Path) -> None:
    with server_process(tmp_path, {ALICE: PASSWORD}) as server:
        base = f"http://127.0.0.1:{server.ports['web']}"
        with httpx.Client(base_url=base) as client:
            login(client)
            cookies = client.cookies
        opened = threading.Event()
        reader = threading.Thread(target=_stream, args=(server, cookies, opened), daemon=True)
        reader.start()
        assert opened.wait(20)
        assert server.stop() == 0
        reader.join(20)
        assert not reader.is_alive()
        # the stream ended when asked to, not cut off when shutdown_grace ran out
        assert "still open after shutdown_grace" not in server.log.read_text()
