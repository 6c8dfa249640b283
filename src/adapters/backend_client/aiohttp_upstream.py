"""The ``UpstreamPort`` over aiohttp: one pooled client session per process.

Why aiohttp and not the httpx API: see ``bench/README.md`` — on this stack httpx's request
building costs more CPU per request than the whole aiohttp client; this module is the only place
that knows which library is used.

The session keeps no per-response state: ``DummyCookieJar`` drops every cookie the upstream
sets, so one user's cookie can never ride along on another user's request. ``trust_env=False``
keeps proxy variables of the environment out of it, and bodies stay compressed as they came
(``auto_decompress=False``) since they are passed through as bytes.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
from yarl import URL

from adapters.backend_client.hop_by_hop import HOP_BY_HOP
from adapters.clock.http_dates import parse_retry_after
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from domain.ports import Headers, UpstreamRequest, UpstreamResponse


class AiohttpUpstream:
    """Sends requests to one base URL through a shared, bounded connection pool."""

    def __init__(
        self, base_url: str, pool_size: int = 100, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._pool_size = pool_size
        self._ssl: ssl.SSLContext | bool = ssl_context or True
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool. Must run inside the event loop that will use it."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size,
                limit_per_host=self._pool_size,
                ttl_dns_cache=60,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def aclose(self) -> None:
        """Close the pool; in-flight requests fail as connection errors."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(self, request: UpstreamRequest, timeout_seconds: float) -> UpstreamResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        target = self._base_url + request.path
        if request.query:
            target = f"{target}?{request.query}"
        try:
            async with asyncio.timeout(timeout_seconds):
                async with self._session.request(
                    request.method,
                    URL(target, encoded=True),
                    headers=request.headers,
                    data=request.body or None,
                    allow_redirects=False,
                ) as answer:
                    body = await answer.read()
                    retry_after = None
                    if answer.status >= 400 and "Retry-After" in answer.headers:
                        retry_after = parse_retry_after(answer.headers["Retry-After"])
                    return UpstreamResponse(
                        answer.status, _response_headers(answer), body, retry_after
                    )
        except TimeoutError as error:
            raise UpstreamTimeout(f"no complete answer within {timeout_seconds:.3f}s") from error
        except aiohttp.ClientError as error:
            raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error


def _response_headers(answer: aiohttp.ClientResponse) -> Headers:
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in answer.raw_headers
        if name.decode("latin-1").lower() not in HOP_BY_HOP
    )
