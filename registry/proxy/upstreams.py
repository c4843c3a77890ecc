"""One remote client per upstream, made on first use and shared by every request of the
process (it holds the connection pool and the token cache)."""

from __future__ import annotations

from registry.proxy import metrics
from registry.proxy.failures import unavailable
from registry.proxy.routing import Upstream
from registry.remote import CredentialsError, RegistryClient


class UpstreamClients:
    def __init__(self) -> None:
        self._clients: dict[str, RegistryClient] = {}

    def client(self, upstream: Upstream) -> RegistryClient:
        """The upstream's client; UNAVAILABLE (naming the source, never the secret) when
        its password file or variable cannot be read -- `registry check-config` says so
        before the server starts."""
        client = self._clients.get(upstream.name)
        if client is None:
            try:
                client = RegistryClient(
                    upstream.config, name=upstream.name, on_request=metrics.upstream_request
                )
            except CredentialsError as exc:
                raise unavailable(upstream.name, str(exc)) from None
            self._clients[upstream.name] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
