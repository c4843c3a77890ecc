"""The HTTP layer of the remote client: one httpx client per remote, auth (anonymous,
Basic, the Docker token flow), redirects, timeouts, error mapping and a report of every
request.

Auth follows what the remote asks for: the first 401 names the scheme (Basic, or Bearer
with a realm), and from then on requests to the remote carry it up front. A 401 with a
token that looked valid discards it and refetches once. Credentials and tokens go to the
remote's own origin and to the realm it names, never anywhere else: a redirect to another
host (blob GETs go to S3 or a CDN) is followed without Authorization and is never
authorized, whatever it answers.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from registry.remote.bandwidth import TokenBucket
from registry.remote.errors import (
    ProtocolError,
    RemoteError,
    Unavailable,
    error_for_status,
)
from registry.remote.events import RequestHook, UpstreamRequest, report
from registry.remote.headers import Challenge, RateLimit, parse_challenges, rate_limit, retry_after
from registry.remote.settings import RemoteSettings
from registry.remote.tokens import TokenCache, TokenGrant, parse_token_response

if TYPE_CHECKING:  # imported where used: a process that makes no client never loads it
    import httpx

MAX_REDIRECTS = 5
ERROR_BODY_MAX = 64 * 1024
TOKEN_BODY_MAX = 1024 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
PIECE = 256 * 1024  # a bytes body larger than this is sent (and metered) in pieces

Body = bytes | AsyncIterable[bytes] | None

# httpcore asks the socket for 64 KiB at a time, and each read costs a timeout scope and
# task lookups on the event loop, and splits (copies) what the loop has read (up to 256
# KiB at once): for a blob body that was most of the CPU a pull through the cache spent.
# Asking for more takes whatever has arrived, in a quarter of the reads. httpcore has no
# setting per client for this; only this client uses httpcore in the registry (set as
# the first client is made).
READ_NUM_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Call:
    """One request as the client means it; the session adds auth, follows redirects and
    maps failures."""

    operation: str
    method: str
    target: str  # a path on the remote ("/v2/...") or an absolute URL it gave (Location)
    scopes: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: Body = None
    body_length: int | None = None
    expect: tuple[int, ...] = (200,)

    @property
    def replayable(self) -> bool:
        """A streamed body cannot be sent twice: no 401 retry."""
        return self.body is None or isinstance(self.body, bytes)

    @property
    def small(self) -> bool:
        """Sent at once: the whole wait for the response headers can be bounded. A long
        body is bounded by the idle timeouts instead."""
        return self.body is None or (isinstance(self.body, bytes) and len(self.body) <= PIECE)


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port or _default_port(pa.scheme)) == (
        pb.scheme,
        pb.hostname,
        pb.port or _default_port(pb.scheme),
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def normalize_scopes(scopes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Scopes merged per resource, actions sorted: ``repository:a:push,pull`` and
    ``repository:a:pull`` become ``repository:a:pull,push`` (one cache key per access)."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        resource, sep, actions = scope.rpartition(":")
        if not sep or not resource:
            continue
        merged.setdefault(resource, set()).update(a for a in actions.split(",") if a)
    return tuple(f"{r}:{','.join(sorted(a))}" for r, a in sorted(merged.items()))


@dataclass(frozen=True)
class _Auth:
    header: str
    key: str | None = None  # the token cache key, for a Bearer token
    token: str | None = None


class Answer:
    """An expected answer whose body is still open. ``aclose`` reports the exchange."""

    def __init__(
        self,
        session: Session,
        response: httpx.Response,
        operation: str,
        started: float,
        bytes_sent: int,
    ) -> None:
        self._session = session
        self.response = response
        self.operation = operation
        self._started = started
        self._bytes_sent = bytes_sent
        self.bytes_received = 0
        self._closed = False

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    @property
    def url(self) -> str:
        return str(self.response.url)

    async def chunks(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives (raw: no content decoding), counted."""
        import httpx

        try:
            async for chunk in self.response.aiter_raw(chunk_size):
                self.bytes_received += len(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            raise self._session.transport_failure(exc, self.operation) from None

    async def read(self, limit: int) -> bytes:
        """The whole body, refused when larger than ``limit`` (nothing unbounded)."""
        declared = self.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise self._session.failure(
                ProtocolError,
                f"answer of {declared} bytes is over the {limit} byte limit",
                self.operation,
                self.status,
            )
        parts: list[bytes] = []
        async for chunk in self.chunks():
            parts.append(chunk)
            if self.bytes_received > limit:
                raise self._session.failure(
                    ProtocolError,
                    f"answer is over the {limit} byte limit",
                    self.operation,
                    self.status,
                )
        return b"".join(parts)

    async def aclose(self, error: str | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        await self.response.aclose()
        self._session.record(
            self.operation,
            self.response.request.method,
            self.status,
            self.bytes_received,
            self._bytes_sent,
            self._started,
            error,
            self.response,
        )


class Session:
    def __init__(
        self,
        settings: RemoteSettings,
        name: str,
        hook: RequestHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.origin = settings.origin
        self.bucket = bucket
        self._hook = hook
        self._credentials = settings.credentials.resolve() if settings.credentials else None
        self._challenge: Challenge | None = None
        self._challenge_known = False
        self._tokens = TokenCache(clock)
        self.rate_limit: RateLimit | None = None
        t = settings.timeouts
        self._header_timeout = t.response_headers
        import httpcore
        import httpx

        httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = READ_NUM_BYTES
        self._http = httpx.AsyncClient(
            verify=settings.tls_verify(),
            timeout=httpx.Timeout(
                connect=t.connect, read=t.idle_read, write=t.idle_read, pool=t.response_headers
            ),
            follow_redirects=False,  # followed here, so that credentials stay home
            trust_env=False,  # no netrc credentials, no proxies from the environment
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "identity"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ reporting

    def record(
        self,
        operation: str,
        method: str,
        status: int | None,
        received: int,
        sent: int,
        started: float,
        error: str | None,
        response: httpx.Response | None = None,
    ) -> None:
        limits = None
        if response is not None:
            limits = rate_limit(
                response.headers.get("ratelimit-limit"),
                response.headers.get("ratelimit-remaining"),
            )
            if limits is not None:
                self.rate_limit = limits
        report(
            self._hook,
            UpstreamRequest(
                self.name,
                operation,
                method,
                status,
                received,
                sent,
                time.monotonic() - started,
                error,
                limits,
            ),
        )

    def scrub(self, text: str) -> str:
        """``text`` with the password and any token held replaced by ``***``."""
        secrets = self._tokens.tokens()
        if self._credentials is not None and self._credentials[1]:
            secrets.append(self._credentials[1])
        for secret in secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def failure(
        self, kind: type[RemoteError], reason: str, operation: str, status: int | None = None
    ) -> RemoteError:
        return kind(self.scrub(reason), upstream=self.name, operation=operation, status=status)

    def transport_failure(self, exc: httpx.HTTPError, operation: str) -> RemoteError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            what = {
                httpx.ConnectTimeout: "connecting",
                httpx.ReadTimeout: "reading (idle)",
                httpx.WriteTimeout: "sending (idle)",
                httpx.PoolTimeout: "waiting for a connection",
            }.get(type(exc), "waiting")
            reason = f"timed out {what}"
        elif isinstance(exc, httpx.ConnectError):
            reason = f"cannot connect: {exc}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return self.failure(Unavailable, reason, operation)

    # ------------------------------------------------------------------ requests

    def url(self, target: str) -> str:
        return target if "://" in target else self.origin + target

    async def open(self, call: Call) -> Answer:
        """Send ``call``; return its answer when the status is expected, raise otherwise."""
        url = self.url(call.target)
        authorized = same_origin(url, self.origin)
        if authorized and not call.replayable and not self._challenge_known:
            await self._learn_challenge()
        answer = await self._exchange(call, url, authorized)
        hops = 0
        while (
            answer.status in _REDIRECTS
            and call.method in ("GET", "HEAD")
            and "location" in answer.headers
        ):
            hops += 1
            location = urljoin(answer.url, answer.headers["location"])
            await answer.aclose()
            if hops > MAX_REDIRECTS or urlsplit(location).scheme not in ("http", "https"):
                raise self.failure(ProtocolError, "too many or bad redirects", call.operation)
            # Once the answer comes from elsewhere, nothing of ours goes along.
            authorized = authorized and same_origin(location, self.origin)
            answer = await self._exchange(call, location, authorized)
        if answer.status in call.expect:
            return answer
        raise await self._unexpected(answer)

    async def _unexpected(self, answer: Answer) -> RemoteError:
        body = b""
        if answer.response.request.method != "HEAD":
            try:
                async for chunk in answer.chunks():
                    body += chunk
                    if len(body) >= ERROR_BODY_MAX:
                        break
            except RemoteError:
                pass
        text = self.scrub(body[:ERROR_BODY_MAX].decode("utf-8", "replace")).encode()
        error = error_for_status(
            answer.status,
            text,
            upstream=self.name,
            operation=answer.operation,
            retry_after=retry_after(answer.headers.get("retry-after")),
        )
        await answer.aclose(error=type(error).__name__)
        return error

    async def _exchange(self, call: Call, url: str, authorized: bool) -> Answer:
        """One request (and, on a 401 to a replayable request, one retry with new auth)."""
        auth = await self._authorization(call.scopes) if authorized else None
        answer = await self._send(call, url, auth)
        if answer.status != 401 or not authorized:
            return answer
        challenge = _pick(parse_challenges(answer.headers.get("www-authenticate", "")))
        if challenge is None:
            return answer
        self._challenge, self._challenge_known = challenge, True
        if auth is not None and auth.key is not None and auth.token is not None:
            self._tokens.discard(auth.key, auth.token)
        if not call.replayable:
            return answer
        if challenge.scheme == "basic" and auth is not None:
            return answer  # the password itself was refused: asking again changes nothing
        refused = await self._unexpected(answer)
        fresh = await self._authorization(normalize_scopes([*call.scopes, *challenge.scopes]))
        if fresh is None or (auth is not None and fresh.header == auth.header):
            raise refused
        return await self._send(call, url, fresh)

    async def _send(self, call: Call, url: str, auth: _Auth | None) -> Answer:
        import httpx

        headers = dict(call.headers)
        if auth is not None:
            headers["Authorization"] = auth.header
        if call.body_length is not None:
            headers["Content-Length"] = str(call.body_length)
        sent = [0]
        content: bytes | AsyncIterable[bytes] | None
        if call.body is None or (isinstance(call.body, bytes) and call.small):
            content = call.body
            sent[0] = len(call.body or b"")
        elif isinstance(call.body, bytes):
            content = self._metered(_pieces(call.body), sent)
        else:
            content = self._metered(call.body, sent)
        target = httpx.URL(url)
        if call.params:
            # Merged, not replaced: an upload Location keeps the remote's state in its query.
            target = target.copy_merge_params(list(call.params))
        request = self._http.build_request(call.method, target, headers=headers, content=content)
        started = time.monotonic()
        try:
            if call.small:
                async with asyncio.timeout(self._header_timeout):
                    response = await self._http.send(request, stream=True)
            else:
                response = await self._http.send(request, stream=True)
        except TimeoutError:
            self.record(call.operation, call.method, None, 0, sent[0], started, "timeout")
            raise self.failure(
                Unavailable,
                f"no response headers within {self._header_timeout:g}s",
                call.operation,
            ) from None
        except httpx.HTTPError as exc:
            self.record(call.operation, call.method, None, 0, sent[0], started, type(exc).__name__)
            raise self.transport_failure(exc, call.operation) from None
        return Answer(self, response, call.operation, started, sent[0])

    async def _metered(self, body: AsyncIterable[bytes], sent: list[int]) -> AsyncIterator[bytes]:
        async for chunk in body:
            if self.bucket is not None:
                await self.bucket.take(len(chunk))
            sent[0] += len(chunk)
            yield chunk

    # ------------------------------------------------------------------ auth

    async def _learn_challenge(self) -> None:
        """Ask ``/v2/`` how to authenticate, before a request whose body cannot be resent."""
        answer = await self._send(Call("ping", "GET", "/v2/"), self.url("/v2/"), None)
        await answer.aclose()
        if answer.status == 401:
            self._challenge = _pick(parse_challenges(answer.headers.get("www-authenticate", "")))
        self._challenge_known = True

    def _basic(self) -> str | None:
        if self._credentials is None:
            return None
        raw = f"{self._credentials[0]}:{self._credentials[1]}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    async def _authorization(self, scopes: tuple[str, ...]) -> _Auth | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            header = self._basic()
            return _Auth(header) if header else None
        if challenge.scheme != "bearer" or not challenge.realm:
            return None
        scopes = normalize_scopes(scopes)
        key = "\n".join([challenge.realm, challenge.service or "", *scopes])
        token = await self._tokens.get(key, lambda: self._fetch_token(challenge, scopes))
        return _Auth(f"Bearer {token}", key, token)

    async def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> TokenGrant:
        realm = challenge.realm or ""
        scheme = urlsplit(realm).scheme
        if scheme not in ("http", "https"):
            raise self.failure(ProtocolError, "the token realm is not an http(s) URL", "token")
        if scheme == "http" and self.origin.startswith("https:") and self._credentials:
            raise self.failure(
                ProtocolError, "refusing to send credentials to a plain-http token realm", "token"
            )
        params = [("service", challenge.service)] if challenge.service else []
        params += [("scope", s) for s in scopes]
        headers = []
        basic = self._basic()
        if basic is not None and self._credentials is not None:
            params.append(("account", self._credentials[0]))
            headers.append(("Authorization", basic))
        call = Call("token", "GET", realm, params=tuple(params), headers=tuple(headers))
        answer = await self._send(call, realm, None)
        if answer.status != 200:
            raise await self._unexpected(answer)
        try:
            body = await answer.read(TOKEN_BODY_MAX)
        finally:
            await answer.aclose()
        grant = parse_token_response(body)
        if grant is None:
            raise self.failure(ProtocolError, "the token service answered no token", "token", 200)
        return grant


async def _pieces(body: bytes) -> AsyncIterator[bytes]:
    view = memoryview(body)
    for i in range(0, len(body), PIECE):
        yield bytes(view[i : i + PIECE])


def _pick(challenges: list[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer with a realm first, then Basic."""
    for c in challenges:
        if c.scheme == "bearer" and c.realm:
            return c
    for c in challenges:
        if c.scheme == "basic":
            return c
    return None
