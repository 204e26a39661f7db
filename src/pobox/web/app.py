"""The webmail's routes: requests → pobox.service.webmail → Jinja2 templates (docs/webmail.md).

Every page but the login form needs a session (pobox.service.websessions); every POST carries
the session's CSRF token and, when the browser sends one, an Origin of this site. Responses
carry a strict Content-Security-Policy (no inline script, nothing from another origin, never
framed); a message's HTML is served on its own, sanitised, with a CSP that forbids script and
sandboxes it, and shown in a sandboxed iframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pobox.config import Config
from pobox.errors import (
    AlreadyExists,
    InvalidInput,
    NoPermission,
    NotAllowed,
    NotFound,
    OverQuota,
    PoboxError,
    Temporary,
    TooBig,
)
from pobox.service.auth import Blocked
from pobox.service.logins import NewLogin
from pobox.service.mail import MailService
from pobox.service.policy import Retention
from pobox.service.submission import Submission
from pobox.service.webmail import SORTS, Moved, Outgoing, Webmail
from pobox.service.webmail_settings import POLICY_KEYS, FolderSettings
from pobox.service.websessions import Login, WebSessions, same_token
from pobox.store.api import MailboxId, Uid
from pobox.web.live import ChangeFeed
from pobox.web.sanitize import sanitise

log = logging.getLogger("pobox.web")

HERE = Path(__file__).parent
SESSION_COOKIE = "pobox_session"
LOGIN_COOKIE = "pobox_login"
PAGE_SIZE = 50
#: Octets a form may have beyond the attachments it carries.
FORM_MARGIN = 1024 * 1024
_MIME_TYPE = re.compile(r"[a-z0-9.+-]+/[a-z0-9.+-]+")
#: Seconds between the comment lines that keep an idle event stream open.
HEARTBEAT = 15.0
#: Put into an event stream's queue to wake it (no mailbox has id 0).
WAKE = 0

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
#: A message's sanitised HTML: no script at all, styles only inline, images only its own
#: inline parts (and remote ones once allowed), framed only by the webmail's own page.
BODY_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:{remote}; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)
#: Anything that is a file of the message's (attachments, source): never run, never framed.
FILE_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: the rights the sharing form offers, with what each lets the other account do (RFC 4314;
#: ``p`` is left out: it means nothing here)
SHARE_RIGHTS = (
    ("l", "see the folder"),
    ("r", "read its messages"),
    ("s", "mark them read or unread"),
    ("w", "flag them"),
    ("i", "add messages (copy or move in)"),
    ("k", "make folders in it"),
    ("x", "delete or rename it"),
    ("t", "delete messages"),
    ("e", "expunge deleted messages"),
    ("a", "change who it is shared with"),
)
SPECIAL_ICONS = {
    None: "folder",
    "\\Drafts": "drafts",
    "\\Sent": "sent",
    "\\Trash": "trash",
    "\\Junk": "junk",
    "\\Archive": "archive",
}


class SecurityHeaders:
    """Headers every response gets (a response that set its own CSP keeps it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    # not no-referrer: Chromium then sends "Origin: null" with our own forms
                    (b"referrer-policy", b"same-origin"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                headers += [(n, v) for n, v in extra if n not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class WebState:
    service: MailService
    webmail: Webmail
    sessions: WebSessions
    feed: ChangeFeed
    closing: asyncio.Event

    @property
    def config(self) -> Config:
        """The configuration in force (a reload replaces the service's)."""
        return self.service.config


class Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


def _icon(special_use: str | None) -> str:
    return SPECIAL_ICONS.get(special_use, "folder")


def _size(octets: int) -> str:
    if octets < 1024:
        return f"{octets} B"
    if octets < 1024 * 1024:
        return f"{octets / 1024:.0f} KB"
    return f"{octets / (1024 * 1024):.1f} MB"


def _when(moment: datetime) -> str:
    local = moment.astimezone(UTC)
    now = datetime.now(UTC)
    if local.date() == now.date():
        return local.strftime("%H:%M")
    if local.year == now.year:
        return local.strftime("%d %b")
    return local.strftime("%Y-%m-%d")


def uid_set(uids: tuple[Uid, ...] | list[Uid]) -> str:
    """UIDs as ranges ("1:3,7") for an undo link."""
    out: list[str] = []
    ordered = sorted(uids)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_uid_set(text: str, limit: int = 10000) -> list[int]:
    uids: list[int] = []
    for item in text.split(","):
        if not item:
            continue
        low, _, high = item.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            raise InvalidInput("bad message list")
        first, last = int(low), int(high or low)
        if last < first or last - first + len(uids) >= limit:
            raise InvalidInput("bad message list")
        uids.extend(range(first, last + 1))
    return uids


def _int(value: str | None, name: str, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise InvalidInput(f"{name} is missing")
        return default
    if not value.isdigit() or len(value) > 12:
        raise InvalidInput(f"{name} must be a number")
    return int(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = _size
    env.filters["when"] = _when
    env.filters["epoch"] = lambda t: datetime.fromtimestamp(float(t), UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    env.filters["icon"] = _icon
    env.filters["urlquote"] = lambda s: quote(str(s), safe="")
    return env


class WebApp:
    """The Starlette application and the state its routes share."""

    def __init__(
        self,
        service: MailService,
        submission: Submission | None = None,
    ) -> None:
        self.state = WebState(
            service=service,
            webmail=Webmail(service, submission),
            sessions=WebSessions(service.store, lambda: service.config.web),
            feed=ChangeFeed(service.store),
            closing=asyncio.Event(),
        )
        self.folder_settings = FolderSettings(service)
        self.env = _environment()
        routes = [
            Route("/", self.home),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/logout-everywhere", self.logout_everywhere, methods=["POST"]),
            Route("/f/{folder:int}", self.folder),
            Route("/f/{folder:int}/act", self.act, methods=["POST"]),
            Route("/undo", self.undo, methods=["POST"]),
            Route("/folders", self.manage_folders, methods=["GET"]),
            Route("/folders", self.change_folders, methods=["POST"]),
            Route("/m/{folder:int}/{uid:int}", self.message),
            Route("/m/{folder:int}/{uid:int}/body", self.body),
            Route("/m/{folder:int}/{uid:int}/part/{part:int}", self.download),
            Route("/m/{folder:int}/{uid:int}/source", self.source),
            Route("/compose", self.compose_form, methods=["GET"]),
            Route("/compose", self.compose, methods=["POST"]),
            Route("/settings", self.settings_form, methods=["GET"]),
            Route("/settings", self.settings, methods=["POST"]),
            Route("/settings/app-passwords", self.app_passwords, methods=["POST"]),
            Route("/settings/policies", self.folder_policy, methods=["POST"]),
            Route("/settings/sharing", self.sharing, methods=["POST"]),
            Route("/events", self.events),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.app = SecurityHeaders(
            Starlette(
                routes=routes,
                exception_handlers={
                    Exception: self._error,
                    HTTPException: self._http_error,
                },
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def close(self) -> None:
        """Stop the event streams (the server is shutting down)."""
        self.state.closing.set()
        self.state.feed.wake(WAKE)
        self.state.feed.close()
        self.state.webmail.close()

    # ---- rendering and errors ------------------------------------------------------------
    def render(self, name: str, code: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**values)
        return HTMLResponse(html, status_code=code)

    def _page_error(self, status: int, text: str, login: Login | None = None) -> HTMLResponse:
        return self.render("error.html", status, status=status, text=text, login=login)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self._page_error(exc.status_code, str(exc.detail))

    async def _error(self, request: Request, exc: Exception) -> Response:
        log.exception("webmail: %s %s failed", request.method, request.url.path)
        return self._page_error(500, "Something went wrong on the server.")

    async def _guard(
        self, request: Request, handler: Callable[[Login], Awaitable[Response]]
    ) -> Response:
        """Run *handler* for the logged-in account; map pobox's errors to pages."""
        login = await self._login(request)
        if login is None:
            if request.url.path == "/events":
                return PlainTextResponse("not logged in", status_code=401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        try:
            if request.method == "POST":
                await self._check_csrf(request, login)
            return await handler(login)
        except Redirect as exc:
            return RedirectResponse(exc.url, status_code=303)
        except PoboxError as exc:
            return self._page_error(_status(exc), str(exc), login)
        finally:  # uploads spooled to temporary files go now, whatever happened
            form = getattr(request.state, "form", None)
            if isinstance(form, FormData):
                await form.close()

    async def _login(self, request: Request) -> Login | None:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        if not session_id:
            return None
        return await self.state.sessions.find(session_id)

    async def _check_csrf(self, request: Request, login: Login) -> None:
        _check_origin(request)
        limit = self.state.config.delivery.max_message_size
        length = request.headers.get("content-length", "")
        # attachments arrive as they are and leave base64-encoded: a third more, and the form
        if length.isdigit() and int(length) > limit * 3 // 4 + FORM_MARGIN:
            raise TooBig(f"the form is larger than the {_size(limit)} a message may have")
        form = await request.form(max_part_size=limit)
        request.state.form = form
        token = form.get("csrf")
        if not isinstance(token, str) or not same_token(token, login.csrf):
            raise NotAllowed("the form is stale or came from another site; reload the page")

    async def _sidebar(self, login: Login) -> dict[str, Any]:
        """What every page's side shows: the folders and the quota."""
        webmail = self.state.webmail
        return {
            "folders": await webmail.folders(login.account),
            "quota": await webmail.quota(login.account),
        }

    # ---- login ---------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            inbox = await self.state.webmail.inbox(login.account)
            return RedirectResponse(f"/f/{inbox.id}", status_code=303)

        return await self._guard(request, run)

    async def login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        target = request.query_params.get("next", "")
        response = self.render(
            "login.html", status, csrf=token, error=error, next=_local_target(target)
        )
        self._set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        try:
            _check_origin(request)
        except NotAllowed as exc:
            return await self.login_form(request, str(exc), 403)
        form = await request.form(max_files=0)
        token = request.cookies.get(LOGIN_COOKIE, "")
        given = form.get("csrf")
        if not token or not isinstance(given, str) or not same_token(given, token):
            return await self.login_form(
                request, "The login form had expired. Please log in again.", 403
            )
        address, password = form.get("address"), form.get("password")
        if not isinstance(address, str) or not isinstance(password, str) or not address:
            return await self.login_form(request, "Enter your address and password.", 400)
        remote = request.client.host if request.client else ""
        try:
            signed = await self.state.service.auth.sign_in(address.strip(), password, remote=remote)
        except Blocked:
            return await self.login_form(
                request, "Too many failed logins. Please try again later.", 429
            )
        if signed is None:
            return await self.login_form(request, "Wrong address or password.", 401)
        account = signed.account
        old = request.cookies.get(SESSION_COOKIE)
        if old:  # a new id at every login (no session fixation)
            await self.state.sessions.end(old)
        try:  # deleting the app password it logged in with ends the session (the store's)
            session_id = await self.state.sessions.start(
                account, None if signed.login is None else signed.login.id
            )
        except AlreadyExists:  # the app password was deleted a moment ago
            return await self.login_form(request, "Wrong address or password.", 401)
        target = form.get("next")
        response = RedirectResponse(
            _local_target(target if isinstance(target, str) else "") or "/", status_code=303
        )
        self._set_cookie(request, response, SESSION_COOKIE, session_id)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        log.info("webmail login account=%s remote=%s", account.address, remote)
        return response

    def _set_cookie(
        self,
        request: Request,
        response: Response,
        name: str,
        value: str,
        max_age: int | None = None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    async def logout(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            await self.state.sessions.end(login.session_id)
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        return await self._guard(request, run)

    async def logout_everywhere(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            ended = await self.state.sessions.end_all(login.account)
            log.info(
                "webmail logout everywhere account=%s sessions=%d", login.account.address, ended
            )
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        return await self._guard(request, run)

    # ---- folders and lists ---------------------------------------------------------------
    async def folder(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            params = request.query_params
            folder_id = int(request.path_params["folder"])
            sort_by = params.get("sort", "date")
            if sort_by not in SORTS:
                raise InvalidInput(f"unknown order {sort_by!r}")
            reverse = params.get(
                "rev", "1" if sort_by in ("date", "arrival", "size", "thread") else "0"
            )
            query = params.get("q", "")[:200]
            field = params.get("in", "all")
            if params.get("scope") == "all" and query.strip():
                results = await self.state.webmail.search_all(login.account, query, field)
                return self.render(
                    "search.html", login=login, current=None, query=query, field=field,
                    scope="all", results=results, folder=folder_id,
                    **await self._sidebar(login),
                )  # fmt: skip
            page = await self.state.webmail.page(
                login.account,
                folder_id,
                sort_by=sort_by,
                reverse=reverse == "1",
                page=_int(params.get("page"), "page", 1),
                size=PAGE_SIZE,
                query=query,
                field=field,
            )
            sidebar = await self._sidebar(login)
            undo = _undo_from(params)
            base = {"sort": sort_by, "rev": reverse, "q": query, "in": field}
            return self.render(
                "list.html",
                login=login,
                **sidebar,
                current=page.mailbox,
                current_name=await self.state.webmail.label(login.account, page.mailbox),
                page=page,
                query=query,
                field=field,
                undo=undo,
                notice=params.get("notice", "")[:200],
                base=base,
                link=lambda **changes: f"/f/{folder_id}?{urlencode({**base, **changes})}",
            )

        return await self._guard(request, run)

    async def act(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            form = await request.form()
            folder_id = int(request.path_params["folder"])
            action = _field(form, "action")
            uids = [_int(str(v), "message") for v in form.getlist("uid")]
            webmail = self.state.webmail
            back = _local_target(_field(form, "back")) or f"/f/{folder_id}"
            moved: Moved | None = None
            notice = ""
            if action in ("seen", "unseen", "flag", "unflag"):
                flag = "seen" if action in ("seen", "unseen") else "flagged"
                await webmail.set_flag(
                    login.account, folder_id, uids, flag, not action.startswith("un")
                )
                if action == "unseen" and back.startswith("/m/"):
                    back = f"/f/{folder_id}"  # opening the message again would read it again
                raise Redirect(back)
            if action == "delete":
                moved = await webmail.delete(login.account, folder_id, uids)
                notice = f"{len(uids)} deleted" if moved is None else ""
            elif action == "junk":
                moved = await webmail.junk(login.account, folder_id, uids)
            elif action == "move":
                dest = _int(_field(form, "dest"), "folder")
                moved = await webmail.move(login.account, folder_id, uids, dest)
            elif action == "empty":
                count = await webmail.empty(login.account, folder_id)
                notice = f"{count} deleted"
            else:
                raise InvalidInput(f"unknown action {action!r}")
            query: dict[str, str] = {}
            if moved is not None and moved.uids:
                query["undo"] = f"{moved.src}.{moved.dst}.{uid_set(list(moved.uids))}"
            if notice:
                query["notice"] = notice
            target = f"/f/{folder_id}" if back.startswith("/m/") else back
            sep = "&" if "?" in target else "?"
            raise Redirect(target + (sep + urlencode(query) if query else ""))

        return await self._guard(request, run)

    async def undo(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            form = await request.form()
            src = _int(_field(form, "src"), "folder")
            dst = _int(_field(form, "dst"), "folder")
            uids = parse_uid_set(_field(form, "uids"))
            back = await self.state.webmail.undo(
                login.account, Moved(MailboxId(src), MailboxId(dst), tuple(Uid(u) for u in uids))
            )
            raise Redirect(f"/f/{back.dst}?{urlencode({'notice': f'{len(back.uids)} put back'})}")

        return await self._guard(request, run)

    async def manage_folders(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            notice = request.query_params.get("notice", "")[:200]
            return self.render(
                "folders.html", login=login, current=None, notice=notice, error="",
                **await self._sidebar(login),
            )  # fmt: skip

        return await self._guard(request, run)

    async def change_folders(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            form = await request.form()
            webmail = self.state.webmail
            action = _field(form, "action")
            try:
                if action == "create":
                    made = await webmail.create_folder(login.account, _field(form, "name"))
                    notice = f"{made.name} created"
                elif action == "rename":
                    folder = _int(_field(form, "folder"), "folder")
                    renamed = await webmail.rename_folder(
                        login.account, folder, _field(form, "name")
                    )
                    notice = f"renamed to {renamed.name}"
                elif action == "delete":
                    folder = _int(_field(form, "folder"), "folder")
                    gone = await webmail.delete_folder(login.account, folder)
                    notice = f"{gone.name} deleted"
                else:
                    raise InvalidInput(f"unknown action {action!r}")
            except (InvalidInput, NotAllowed, AlreadyExists) as exc:
                return self.render(
                    "folders.html", 400, login=login, current=None, notice="", error=str(exc),
                    **await self._sidebar(login),
                )  # fmt: skip
            raise Redirect(f"/folders?{urlencode({'notice': notice})}")

        return await self._guard(request, run)

    # ---- reading -------------------------------------------------------------------------
    async def message(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            folder_id = int(request.path_params["folder"])
            uid = int(request.path_params["uid"])
            part_text = request.query_params.get("part")
            part = None if part_text is None else _int(part_text, "part")
            webmail = self.state.webmail
            view = await webmail.message(login.account, folder_id, uid, part)
            live = request.headers.get("x-requested-with") == "live"  # the page refreshing
            if part is None and "\\Seen" not in view.flags and not live:
                # reading marks it read where the user may (the s right of a shared folder,
                # RFC 4314 §4, as IMAP's FETCH BODY[])
                with contextlib.suppress(NoPermission):
                    await webmail.set_flag(login.account, folder_id, [uid], "seen", True)
            remote = request.query_params.get("remote") == "1"
            blocked = 0
            if view.html is not None:
                blocked = sanitise(view.html, inline=view.inline, remote=remote).blocked
            body_query = urlencode(
                {k: v for k, v in (("part", part_text), ("remote", "1" if remote else None)) if v}
            )
            return self.render(
                "message.html",
                login=login,
                **await self._sidebar(login),
                current=view.mailbox,
                current_name=await self.state.webmail.label(login.account, view.mailbox),
                view=view,
                blocked=blocked,
                remote=remote,
                body_url=f"/m/{folder_id}/{uid}/body" + (f"?{body_query}" if body_query else ""),
            )

        return await self._guard(request, run)

    async def body(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            folder_id = int(request.path_params["folder"])
            uid = int(request.path_params["uid"])
            part_text = request.query_params.get("part")
            part = None if part_text is None else _int(part_text, "part")
            remote = request.query_params.get("remote") == "1"
            view = await self.state.webmail.message(login.account, folder_id, uid, part)
            clean = sanitise(view.html or "", inline=view.inline, remote=remote)
            page = self.render("body.html", html=clean.html)
            page.headers["content-security-policy"] = BODY_CSP.format(
                remote=" https: http:" if remote else ""
            )
            page.headers["x-frame-options"] = "SAMEORIGIN"
            return page

        return await self._guard(request, run)

    async def download(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            item = await self.state.webmail.download(
                login.account,
                int(request.path_params["folder"]),
                int(request.path_params["uid"]),
                int(request.path_params["part"]),
            )
            mime_type = (
                item.mime_type
                if re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", item.mime_type)
                else "application/octet-stream"
            )
            return Response(
                item.data,
                media_type=mime_type,
                headers={
                    "content-disposition": _disposition(item.filename),
                    "content-security-policy": FILE_CSP,
                },
            )

        return await self._guard(request, run)

    async def source(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            data = await self.state.webmail.source(
                login.account, int(request.path_params["folder"]), int(request.path_params["uid"])
            )
            return Response(
                data,
                media_type="text/plain; charset=utf-8",
                headers={"content-security-policy": FILE_CSP},
            )

        return await self._guard(request, run)

    # ---- writing -------------------------------------------------------------------------
    async def compose_form(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            params = request.query_params
            webmail = self.state.webmail
            out = Outgoing()
            source = ""
            mode = params.get("mode", "")
            if params.get("reply"):
                folder_text, _, uid_text = params["reply"].partition(":")
                folder_id, uid = _int(folder_text, "folder"), _int(uid_text, "message")
                view = await webmail.message(login.account, folder_id, uid)
                if mode not in ("reply", "all", "forward"):
                    raise InvalidInput(f"unknown reply mode {mode!r}")
                out = webmail.reply(view, mode, login.account.address)
                source = f"{folder_id}:{uid}"
            elif params.get("draft"):
                folder_text, _, uid_text = params["draft"].partition(":")
                folder_id, uid = _int(folder_text, "folder"), _int(uid_text, "message")
                view = await webmail.message(login.account, folder_id, uid)
                out = Outgoing(
                    to=view.to,
                    cc=view.cc,
                    subject=view.subject,
                    body=view.text or "",
                    references=view.references,
                )
                source = f"{folder_id}:{uid}"
            for name in ("to", "cc", "subject"):
                if params.get(name):
                    out = _with(out, name, params[name][:1000])
            return self.render(
                "compose.html",
                login=login,
                **await self._sidebar(login),
                current=None,
                out=out,
                mode=mode,
                source=source,
                draft=params.get("draft", ""),
                suggestions=await webmail.known_addresses(login.account),
                error="",
            )

        return await self._guard(request, run)

    async def compose(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            limit = self.state.config.delivery.max_message_size
            form = await request.form()  # read once, by the CSRF check
            webmail = self.state.webmail
            # each upload as the form parser spooled it (to a temporary file past 1 MiB),
            # handed on as a file: the message is built reading it a piece at a time
            attachments: list[tuple[str, str, BinaryIO]] = []
            total = 0
            for item in form.getlist("attachment"):
                if isinstance(item, UploadFile) and item.filename:
                    total += await asyncio.to_thread(_upload_size, item)
                    if total > limit:
                        raise TooBig(f"the attachments are larger than {_size(limit)}")
                    attachments.append(
                        (item.filename, item.content_type or "application/octet-stream", item.file)
                    )
            mode = _field(form, "mode")
            source = _field(form, "source")
            forward: tuple[MailboxId, Uid] | None = None
            reply_to: tuple[int, int] | None = None
            if source:
                folder_text, _, uid_text = source.partition(":")
                pair = (_int(folder_text, "folder"), _int(uid_text, "message"))
                if mode == "forward":
                    forward = (MailboxId(pair[0]), Uid(pair[1]))
                elif mode in ("reply", "all"):
                    reply_to = pair
            out = Outgoing(
                to=_field(form, "to"),
                cc=_field(form, "cc"),
                bcc=_field(form, "bcc"),
                subject=_field(form, "subject"),
                body=_field(form, "body"),
                in_reply_to=_field(form, "in_reply_to"),
                references=_field(form, "references"),
                attachments=tuple(attachments),
                forward=forward,
            )
            draft_text = _field(form, "draft")
            draft: tuple[int, int] | None = None
            if draft_text:
                folder_text, _, uid_text = draft_text.partition(":")
                draft = (_int(folder_text, "folder"), _int(uid_text, "message"))
            if _field(form, "action") == "autosave":  # the page's script, as the user writes
                uid = await webmail.save_draft(login.account, out, draft)
                drafts = await webmail.special(login.account, "\\Drafts")
                return JSONResponse({"draft": f"{drafts.id}:{uid}"})
            if _field(form, "action") == "save":
                await webmail.save_draft(login.account, out, draft)
                drafts = await webmail.special(login.account, "\\Drafts")
                raise Redirect(f"/f/{drafts.id}?{urlencode({'notice': 'draft saved'})}")
            try:
                await webmail.send(login.account, out)
            except (InvalidInput, NotFound, NotAllowed) as exc:
                return self.render(
                    "compose.html",
                    400,
                    login=login,
                    **await self._sidebar(login),
                    current=None,
                    out=out,
                    mode=mode,
                    source=source,
                    draft=draft_text,
                    suggestions=[],
                    error=str(exc),
                )
            if reply_to is not None:
                with contextlib.suppress(NotFound):
                    await webmail.mark_answered(login.account, *reply_to)
            if draft is not None:
                with contextlib.suppress(NotFound, NotAllowed):
                    await webmail.discard_draft(login.account, *draft)
            inbox = await webmail.inbox(login.account)
            raise Redirect(f"/f/{inbox.id}?{urlencode({'notice': 'message sent'})}")

        return await self._guard(request, run)

    # ---- settings ------------------------------------------------------------------------
    async def settings_form(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            return await self._settings_page(login, "")

        return await self._guard(request, run)

    async def _settings_page(
        self,
        login: Login,
        notice: str,
        status: int = 200,
        error: str = "",
        new_password: NewLogin | None = None,
        *,
        policy_error: str = "",
        share_error: str = "",
        share_notice: str = "",
    ) -> Response:
        service = self.state.service
        retention = service.policies.retention(login.account)
        settings = self.folder_settings
        return self.render(
            "settings.html",
            status,
            login=login,
            **await self._sidebar(login),
            current=None,
            retention=retention,
            own="pop3.retention" in login.account.settings,
            notice=notice,
            error=error,
            app_passwords=await self.state.webmail.app_passwords(login.account),
            new_password=new_password,
            policies=await settings.policies(login.account),
            policy_keys=POLICY_KEYS,
            policy_error=policy_error,
            shares=await settings.shares(login.account),
            rights=SHARE_RIGHTS,
            allow_anyone=service.config.acl.allow_anyone,
            share_error=share_error,
            share_notice=share_notice,
        )

    async def folder_policy(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            form = await request.form()
            folder = _int(_field(form, "folder"), "folder")
            values = {key: _field(form, key) for key in POLICY_KEYS}
            try:
                mailbox = await self.folder_settings.set_policy(login.account, folder, values)
            except InvalidInput as exc:
                return await self._settings_page(login, "", 400, policy_error=str(exc))
            return await self._settings_page(login, f"The policy of {mailbox.name} is saved.")

        return await self._guard(request, run)

    async def sharing(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            form = await request.form()
            folder = _int(_field(form, "folder"), "folder")
            settings = self.folder_settings
            action = _field(form, "action")
            who = _field(form, "identifier")
            try:
                if action == "share":
                    rights = "".join(v for v in form.getlist("right") if isinstance(v, str))
                    access, stored = await settings.share(login.account, folder, who, rights)
                    notice = (
                        f"{access.name} is shared with {who.strip()}."
                        if stored
                        else f"{access.name} is no longer shared with {who.strip()}."
                    )
                elif action == "unshare":
                    access = await settings.unshare(login.account, folder, who)
                    notice = f"{access.name} is no longer shared with {who.strip()}."
                else:
                    raise InvalidInput(f"unknown action {action!r}")
            except (InvalidInput, NotAllowed) as exc:
                return await self._settings_page(login, "", 400, share_error=str(exc))
            return await self._settings_page(login, "", share_notice=notice)

        return await self._guard(request, run)

    async def app_passwords(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            form = await request.form()
            webmail = self.state.webmail
            if _field(form, "delete"):
                gone = await webmail.delete_app_password(login.account, _field(form, "delete"))
                return await self._settings_page(login, f"App password {gone.label!r} deleted.")
            if _field(form, "action") != "add":
                raise InvalidInput("unknown action")
            remote = request.client.host if request.client else ""
            try:
                made = await webmail.add_app_password(
                    login.account, _field(form, "new_label"), _field(form, "password"), remote
                )
            except Blocked:
                return await self._settings_page(
                    login, "", 429, "Too many failed logins. Please try again later."
                )
            except (InvalidInput, NotAllowed, AlreadyExists) as exc:
                return await self._settings_page(login, "", 400, str(exc))
            return await self._settings_page(login, "", new_password=made)

        return await self._guard(request, run)

    async def settings(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            form = await request.form()
            policy = _field(form, "retention")
            if policy == "keep-days":
                policy = f"keep-days:{_int(_field(form, 'days'), 'days')}"
            try:
                Retention.parse(policy) if policy != "default" else None
            except ValueError as exc:
                raise InvalidInput(str(exc)) from None
            value = None if policy == "default" else policy
            await self.state.service.accounts.set_setting(
                login.account.address, "pop3.retention", value
            )
            fresh = await self.state.service.accounts.require(login.account.address)
            return await self._settings_page(
                Login(fresh, login.session_id, login.csrf), "Settings saved."
            )

        return await self._guard(request, run)

    # ---- live updates --------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        async def run(login: Login) -> Response:
            feed = self.state.feed
            # the folders shared with the account that it may read change live too
            shared = await self.state.webmail.readable_shared(login.account)
            queue = await feed.subscribe(login.account.id, shared)
            closing = self.state.closing
            drain = self.state.service.drain
            key = object()
            ended = asyncio.Event()

            def end(force: bool) -> None:  # the server is shutting down: wake the stream
                ended.set()
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(WAKE)

            drain.register(key, end)

            async def stream() -> AsyncIterator[bytes]:
                try:
                    yield b"retry: 1000\n\n"
                    while not closing.is_set() and not ended.is_set():
                        try:
                            first = await asyncio.wait_for(queue.get(), HEARTBEAT)
                        except TimeoutError:
                            yield b": keep-alive\n\n"
                            continue
                        changed = {first}
                        while not queue.empty():
                            changed.add(queue.get_nowait())
                        changed.discard(WAKE)
                        for mailbox_id in sorted(changed):
                            yield f"event: change\ndata: {mailbox_id}\n\n".encode()
                finally:
                    feed.unsubscribe(login.account.id, queue)
                    drain.unregister(key)

            return StreamingResponse(
                stream(),
                media_type="text/event-stream",
                headers={"x-accel-buffering": "no"},
            )

        return await self._guard(request, run)


def _status(exc: PoboxError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, NotAllowed | NoPermission):
        return 403
    if isinstance(exc, TooBig | OverQuota):
        return 413
    if isinstance(exc, Temporary):
        return 503
    return 400


def _upload_size(item: UploadFile) -> int:
    """Blocking: an upload's octets (its spooled file left at its start)."""
    fp = item.file
    size = fp.seek(0, io.SEEK_END)
    fp.seek(0)
    return size


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _with(out: Outgoing, name: str, value: str) -> Outgoing:
    values = {"to": out.to, "cc": out.cc, "subject": out.subject, name: value}
    return replace(out, to=values["to"], cc=values["cc"], subject=values["subject"])


def _local_target(target: str) -> str:
    """A redirect target from a form or query: a path on this site, nothing else."""
    # browsers drop tabs and newlines from URLs: "/\t/evil.example" is "//evil.example"
    target = "".join(ch for ch in target if ch.isprintable() and not ch.isspace())[:2000]
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def _check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:  # an older browser, or a tool: the token alone decides
        return
    host = request.headers.get("host", "")
    if origin.split("://", 1)[-1] != host:
        raise NotAllowed("the form came from another site")


def _undo_from(params: Any) -> dict[str, str] | None:
    text = params.get("undo", "")
    src, _, rest = text.partition(".")
    dst, _, uids = rest.partition(".")
    if not (src.isdigit() and dst.isdigit() and uids):
        return None
    try:
        count = len(parse_uid_set(uids))
    except InvalidInput:
        return None
    return {"src": src, "dst": dst, "uids": uids, "count": str(count)}


def _disposition(filename: str) -> str:
    ascii_name = "".join(
        ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_" for ch in filename
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
