"""Header fields that describe one connection, not the message: never forwarded either way.

RFC 9110 §7.6.1: a proxy removes ``Connection``, every field that ``Connection`` names, and the
hop-by-hop fields (``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Transfer-Encoding``,
``Upgrade``, ...). ``Host`` and ``Content-Length`` are here too: the gateway writes its own.
The gateway adds its own fields (``X-Request-ID``, ``X-Forwarded-*``, the RateLimit fields) after
this filtering, so a ``Connection`` list can never remove them.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def connection_tokens(value: str) -> list[str]:
    """The field names one ``Connection`` header value lists, lower case."""
    return [token for part in value.split(",") if (token := part.strip().lower())]


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop fields and those the ``Connection`` fields name."""
    listed = list(headers)
    named: set[str] = set()
    for name, value in listed:
        if name.lower() == "connection":
            named.update(connection_tokens(value))
    return [
        (name, value)
        for name, value in listed
        if (lowered := name.lower()) not in HOP_BY_HOP and lowered not in named
    ]
