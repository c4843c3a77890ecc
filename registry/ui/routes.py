"""The web UI's pages and forms (docs/ui.md): thin handlers that ask the viewer what may
be shown or done (registry/ui/viewer.py), read through the store and render a template.

Every route here is public in the API's access table; the UI does its own checks, with
the one ``Viewer`` for the pages and for the handlers that delete. URLs put the action
after ``/-/``, which no repository name can hold (a component never starts with ``-``),
so a name never reads as an action.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry import errors
from registry.auth import Authorizer
from registry.auth.identities import credential_fingerprint
from registry.config import Config
from registry.context import acting_as, current
from registry.errors import RegistryError
from registry.reference import check_name, check_tag, parse_digest
from registry.store import RegistryStore, StorageError
from registry.ui import repositories, storage, tags
from registry.ui.contents import Contents
from registry.ui.ordering import parse_listing
from registry.ui.pull import pull_commands
from registry.ui.render import Renderer, asset_response
from registry.ui.sessions import COOKIE, COOKIE_PATH, Session, SessionCodec
from registry.ui.viewer import Viewer

log = logging.getLogger("registry.ui")

FORM_MAX = 16 * 1024  # bytes of a form body; ours are a few hundred
_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


@dataclass(frozen=True)
class UiState:
    """What the UI keeps per process (``app.state.ui``): nothing a request changes."""

    renderer: Renderer
    sessions: SessionCodec
    contents: Contents


class Refusal(Exception):
    """A page that says why not, with its status."""

    def __init__(
        self, status: int, title: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.headers = dict(headers or {})


class LoginNeeded(Exception):
    """An anonymous visitor asked for what a login may show: to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class UiRoute(APIRoute):
    """A route whose refusals are pages, not the API's JSON errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            bounce = _cross_site_arrival(request)
            if bounce is not None:
                return bounce
            try:
                return await handler(request)
            except LoginNeeded as exc:
                return RedirectResponse(login_url(exc.next_url), status_code=303)
            except Refusal as exc:
                return await refusal_page(request, exc)
            except RegistryError as exc:
                return await refusal_page(request, _refusal_of(exc))
            except StorageError as exc:
                log.error("storage error on %s %s: %s", request.method, request.url.path, exc)
                return await refusal_page(
                    request,
                    Refusal(503, "Storage unavailable", "The storage did not answer; try again."),
                )

        return guarded


router = APIRouter(route_class=UiRoute)


def _cross_site_arrival(request: Request) -> Response | None:
    """A link from another site: the browser leaves the SameSite=Strict cookie out of
    that one navigation, so the page would show a logged-in user as logged out. A page
    that reloads itself at once is a navigation from this site, which carries it."""
    if (
        request.method != "GET"
        or request.headers.get("sec-fetch-site") != "cross-site"
        or request.headers.get("sec-fetch-mode") != "navigate"
        or COOKIE in request.cookies
        or _authorizer(request) is None
    ):
        return None
    return ui_state(request).renderer.page(
        "reload.html", {"here": _here(request)}, headers={"Refresh": "0"}
    )


# ------------------------------------------------------------------------ the visitor


@dataclass(frozen=True)
class Visit:
    viewer: Viewer
    session: Session | None
    csrf: str  # the token this session's forms carry ("" without a session)
    cookie: str | None = None  # a cookie to set (a session issued by this request)


def ui_state(request: Request) -> UiState:
    state: UiState = request.app.state.ui
    return state


def _store(request: Request) -> RegistryStore:
    store: RegistryStore = request.app.state.store
    return store


def _config(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def _authorizer(request: Request) -> Authorizer | None:
    authorizer: Authorizer | None = request.app.state.authorizer
    return authorizer


async def visit_of(request: Request, *, need_session: bool = False) -> Visit:
    """Who is visiting, from the session cookie; with ``need_session`` (a page with a
    form) an anonymous session is issued when there is none."""
    ui = ui_state(request)
    authorizer = _authorizer(request)
    session = await ui.sessions.read(request.cookies.get(COOKIE))
    identity = None
    if session is not None and session.user is not None and authorizer is not None:
        user = authorizer.directory.get(session.user)
        if user is not None and hmac.compare_digest(
            credential_fingerprint(user).encode(), session.fingerprint.encode()
        ):
            identity = user.identity
    readonly = await request.app.state.readonly.refusal() is not None
    viewer = Viewer(
        identity,
        authorizer.policy if authorizer is not None else None,
        _config(request).storage.delete.enabled,
        readonly,
    )
    cookie = None
    if session is None and need_session:
        session, cookie = await ui.sessions.issue()
    csrf = await ui.sessions.csrf_token(session) if session is not None else ""
    return Visit(viewer, session, csrf, cookie)


def set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _context(request: Request, visit: Visit | None) -> dict[str, Any]:
    """What every page's frame (base.html) shows: who is logged in, their form token."""
    return {
        "viewer": visit.viewer if visit is not None else None,
        "csrf": visit.csrf if visit is not None else "",
        "auth": _authorizer(request) is not None,
        "path": request.url.path,
        "here": _here(request),
    }


async def render(
    request: Request,
    visit: Visit,
    template: str,
    status: int = 200,
    **context: Any,
) -> Response:
    ui = ui_state(request)
    response = ui.renderer.page(template, {**_context(request, visit), **context}, status)
    if visit.cookie is not None:
        set_session_cookie(request, response, visit.cookie, int(ui.sessions.lifetime))
    return response


async def refusal_page(request: Request, refusal: Refusal) -> Response:
    """The page of a refusal, with the visitor's header when it can still be read."""
    try:
        visit: Visit | None = await visit_of(request)
    except (RegistryError, StorageError):
        visit = None
    context = {**_context(request, visit), "refusal": refusal}
    return ui_state(request).renderer.page("refusal.html", context, refusal.status, refusal.headers)


def _refusal_of(exc: RegistryError) -> Refusal:
    if exc.status == 404 or exc.code in _NOT_FOUND:
        return Refusal(404, "Not found", "There is nothing here, or you may not see it.")
    return Refusal(exc.status, "Not possible", exc.message, exc.headers)


# A name, tag or digest that cannot exist is just not there.
_NOT_FOUND = (errors.NAME_INVALID, errors.TAG_INVALID, errors.DIGEST_INVALID)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def login_url(next_url: str) -> str:
    return "/ui/login?" + urlencode({"next": next_url})


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of the UI, never another site."""
    if value and value.startswith("/ui/") and "//" not in value and "\\" not in value:
        return value
    return "/ui/"


def host_of(request: Request) -> str:
    """The host name the browser used, for pull commands (a placeholder when odd)."""
    host = request.headers.get("host", "")
    return host if _HOST.match(host) else "REGISTRY"


def require_pull(request: Request, visit: Visit, name: str) -> None:
    """The viewer may see ``name``, or: a login for an anonymous visitor when auth is
    on, and "not found" for everyone else (whether it exists is not told)."""
    if visit.viewer.may_pull(name):
        return
    if visit.viewer.identity is None and _authorizer(request) is not None:
        raise LoginNeeded(_here(request))
    raise Refusal(404, "Not found", "There is nothing here, or you may not see it.")


def require_delete(request: Request, visit: Visit, name: str) -> None:
    require_pull(request, visit, name)
    if visit.viewer.may_delete(name):
        return
    if visit.viewer.readonly:
        raise Refusal(503, "Read-only", "The registry is read-only now: nothing can be deleted.")
    if not visit.viewer.deletes_enabled:
        raise Refusal(405, "Deleting is off", "Deletion is disabled on this registry.")
    raise Refusal(403, "Not allowed", "You may not delete in this repository.")


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form body (the only kind our forms send), first value per field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            raise Refusal(413, "Too large", "The form is larger than any this site sends.")
    try:
        fields = parse_qs(body.decode(), max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    return {k: v[0] for k, v in fields.items()}


async def check_form(request: Request, visit: Visit, form: Mapping[str, str]) -> None:
    """A form is this site's: the session's CSRF token, and, when the browser names
    the origin of the page that sent it, this host. (The host only: behind a proxy
    that terminates TLS the scheme seen here may differ from the browser's.)"""
    origin = request.headers.get("origin")
    same_origin = origin is None or urlsplit(origin).netloc == request.headers.get("host")
    ui = ui_state(request)
    if not same_origin or not await ui.sessions.check_csrf(visit.session, form.get("csrf", "")):
        raise Refusal(
            403,
            "Form refused",
            "This form did not come from this page, or it expired. Go back, reload the "
            "page and try again.",
        )


def _repository_url(name: str, **params: str) -> str:
    url = "/ui/repositories/" + quote(name, safe="/")
    return url + ("?" + urlencode(params) if params else "")


# ---------------------------------------------------------------------- entry points


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/ui/", status_code=302)


@router.get("/ui")
async def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=302)


@router.api_route("/ui/static/{file}", methods=["GET", "HEAD"])
async def static(request: Request, file: str) -> Response:
    asset = ui_state(request).renderer.assets.get(file)
    if asset is None:
        raise Refusal(404, "Not found", "There is no such file.")
    return asset_response(asset, request)


# ------------------------------------------------------------------------- the pages


@router.get("/ui/")
async def repositories_page(request: Request) -> Response:
    visit = await visit_of(request)
    listing = parse_listing(request.query_params, repositories.SORTS, "name")
    found = await repositories.repository_list(_store(request), visit.viewer, listing)
    return await render(
        request,
        visit,
        "repositories.html",
        found=found,
        listing=listing,
        sorts=repositories.SORTS,
    )


@router.get("/ui/storage")
async def storage_page(request: Request) -> Response:
    visit = await visit_of(request)
    listing = parse_listing(request.query_params, storage.SORTS, "unique")
    report = await storage.storage_report(_store(request), visit.viewer, listing)
    return await render(
        request,
        visit,
        "storage.html",
        report=report,
        listing=listing,
        sorts=storage.SORTS,
    )


@router.get("/ui/repositories/{name:path}/-/manifests/{reference}")
async def manifest_page(request: Request, name: str, reference: str) -> Response:
    name = check_name(name)
    visit = await visit_of(request)
    require_pull(request, visit, name)
    store = _store(request)
    stored = await store.manifests.resolve(name, reference)
    contents = ui_state(request).contents
    details = await contents.details(name, stored.digest)
    referrers, truncated = await contents.referrers(name, stored.digest)
    tagged = await tags.tags_naming(store, name, stored.digest)
    host = host_of(request)
    shown_reference = reference if reference in tagged else str(stored.digest)
    return await render(
        request,
        visit,
        "manifest.html",
        name=name,
        reference=reference,
        details=details,
        referrers=referrers,
        referrers_truncated=truncated,
        tags=tagged,
        commands=pull_commands(host, name, shown_reference, request.url.scheme == "http"),
        may_delete=visit.viewer.may_delete(name),
    )


@router.api_route("/ui/repositories/{name:path}/-/tags/{tag}/delete", methods=["GET", "POST"])
async def delete_tag(request: Request, name: str, tag: str) -> Response:
    name, tag = check_name(name), check_tag(tag)
    visit = await visit_of(request, need_session=True)
    form = await read_form(request) if request.method == "POST" else {}
    if request.method == "POST":
        await check_form(request, visit, form)
    require_delete(request, visit, name)
    store = _store(request)
    digest = await store.tags.target(name, tag)
    if request.method == "POST":
        with acting_as(replace(current(), actor=visit.viewer.user)):
            await store.manifests.delete(name, tag)
        log.info("ui: %s deleted tag %s:%s", visit.viewer.user or "-", name, tag)
        return RedirectResponse(_repository_url(name, deleted=tag), status_code=303)
    others = [t for t in await tags.tags_naming(store, name, digest) if t != tag]
    return await render(
        request, visit, "delete_tag.html", name=name, tag=tag, digest=digest, others=others
    )


@router.api_route(
    "/ui/repositories/{name:path}/-/manifests/{reference}/delete", methods=["GET", "POST"]
)
async def delete_manifest(request: Request, name: str, reference: str) -> Response:
    name = check_name(name)
    digest = parse_digest(reference)
    visit = await visit_of(request, need_session=True)
    form = await read_form(request) if request.method == "POST" else {}
    if request.method == "POST":
        await check_form(request, visit, form)
    require_delete(request, visit, name)
    store = _store(request)
    stored = await store.manifests.revision(name, digest)
    tagged = await tags.tags_naming(store, name, stored.digest)
    # The confirmation named the tags that go; if they changed since, ask again.
    changed = request.method == "POST" and form.get("tags", "") != " ".join(tagged)
    if request.method == "POST" and not changed:
        with acting_as(replace(current(), actor=visit.viewer.user)):
            await store.manifests.delete(name, str(stored.digest))
        log.info("ui: %s deleted manifest %s@%s", visit.viewer.user or "-", name, stored.digest)
        return RedirectResponse(_repository_url(name, deleted=str(stored.digest)), status_code=303)
    return await render(
        request,
        visit,
        "delete_manifest.html",
        status=409 if changed else 200,
        name=name,
        digest=stored.digest,
        media_type=stored.media_type,
        tags=tagged,
        changed=changed,
    )


@router.get("/ui/repositories/{name:path}")
async def repository_page(request: Request, name: str) -> Response:
    name = check_name(name)
    visit = await visit_of(request)
    require_pull(request, visit, name)
    store = _store(request)
    listing = parse_listing(request.query_params, tags.SORTS, "name")
    page = await tags.tag_list(store, ui_state(request).contents, name, listing)
    if page.total == 0 and not listing.query and not await store.catalog.contains(name):
        raise Refusal(404, "Not found", "There is nothing here, or you may not see it.")
    host = host_of(request)
    plain = request.url.scheme == "http"
    commands = {row.name: pull_commands(host, name, row.name, plain) for row in page.items}
    return await render(
        request,
        visit,
        "repository.html",
        name=name,
        page=page,
        listing=listing,
        sorts=tags.SORTS,
        commands=commands,
        may_delete=visit.viewer.may_delete(name),
        deleted=request.query_params.get("deleted", "")[:200],
    )


# ---------------------------------------------------------------------- logging in


@router.get("/ui/login")
async def login_form(request: Request) -> Response:
    if _authorizer(request) is None:
        return RedirectResponse("/ui/", status_code=303)
    visit = await visit_of(request, need_session=True)
    next_url = safe_next(request.query_params.get("next"))
    return await render(request, visit, "login.html", next_url=next_url, error=None, username="")


@router.post("/ui/login")
async def login(request: Request) -> Response:
    authorizer = _authorizer(request)
    if authorizer is None:
        return RedirectResponse("/ui/", status_code=303)
    visit = await visit_of(request)
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    username = form.get("username", "")[:128]
    password = form.get("password", "")
    ui = ui_state(request)
    try:
        await check_form(request, visit, form)
    except Refusal:
        # An expired page or cookies turned off: a fresh form, with a session to post it.
        session, cookie = await ui.sessions.issue()
        visit = Visit(visit.viewer, session, await ui.sessions.csrf_token(session), cookie)
        return await render(
            request,
            visit,
            "login.html",
            status=403,
            next_url=next_url,
            username=username,
            error="The login form expired (or cookies are off for this site). Try again.",
        )
    try:
        user = await authorizer.login(username, password, request)
    except RegistryError as exc:
        if exc.status == 429:
            error = "Too many failed logins. Wait a minute and try again."
        else:
            error = "Wrong user name or password."
        return await render(
            request,
            visit,
            "login.html",
            status=exc.status,
            next_url=next_url,
            username=username,
            error=error,
        )
    _, cookie = await ui.sessions.issue(user.name, credential_fingerprint(user))
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(request, response, cookie, int(ui.sessions.lifetime))
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    visit = await visit_of(request)
    await check_form(request, visit, await read_form(request))
    response = RedirectResponse("/ui/", status_code=303)
    set_session_cookie(request, response, "", 0)
    return response
