"""An httpx auth flow that does what docker and containerd do against a token registry:
ask the realm for a token (HTTP Basic credentials) for the scope a request needs, send it
as Bearer, and on a 401 challenge fetch a token for the challenged scope and retry."""

from __future__ import annotations

import re
from collections.abc import Generator

import httpx

from registry.reference import is_valid_name

_NAME_RE = re.compile(
    r"^/v2/(?P<name>.+)/(?:blobs/uploads/?[^/]*|blobs/[^/]+|manifests/[^/]+|tags/list|referrers/[^/]+)$"
)
_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


def _scope_for(request: httpx.Request) -> str | None:
    """The scope a client would ask for before sending this request."""
    m = _NAME_RE.match(request.url.path)
    if m is None:
        return "registry:catalog:*" if request.url.path == "/v2/_catalog" else None
    scopes = [f"repository:{m.group('name')}:pull,push,delete"]
    source = request.url.params.get("from")
    if source and is_valid_name(source):  # a cross-repository mount reads the source
        scopes.append(f"repository:{source}:pull")
    return " ".join(scopes)


class DockerTokenAuth(httpx.Auth):
    def __init__(self, username: str, password: str, realm: str, service: str) -> None:
        self.credentials = (username, password)
        self.realm = realm
        self.service = service
        self.tokens: dict[str, str] = {}

    def _token_request(self, scope: str | None, realm: str | None = None) -> httpx.Request:
        params: list[tuple[str, str]] = [("service", self.service)]
        params += [("scope", s) for s in (scope or "").split()]
        request = httpx.Request("GET", realm or self.realm, params=params)
        return next(httpx.BasicAuth(*self.credentials).auth_flow(request))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope = _scope_for(request)
        key = scope or ""
        if key not in self.tokens:
            answer = yield self._token_request(scope)
            answer.read()
            self.tokens[key] = answer.json()["token"]
        request.headers["Authorization"] = f"Bearer {self.tokens[key]}"
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.startswith("Bearer "):
            return
        params = dict(_PARAM_RE.findall(challenge))
        answer = yield self._token_request(params.get("scope"), params.get("realm"))
        answer.read()
        request.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        yield request
