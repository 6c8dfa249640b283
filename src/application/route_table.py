"""The route table's matcher: which route a request's path and method go to. Pure.

Exact paths are one dict lookup. Prefixes are matched by walking the request path's own
segments from the longest (``/a/b/c``, ``/a/b``, ``/a``, then ``/``), one dict lookup each, so
the work never grows with the number of routes, and the longest matching prefix wins by
construction. The walk starts no deeper than the table's deepest prefix, so a client's path of
thousands of segments costs one scan of it, not one step per segment. An exact path beats a
prefix. The path decides the route; the method is checked after it (a method the route does not
take is ``MethodNotAllowed`` with the methods it does take, never a shorter route's match).

Paths are matched as the client sent them, with one normalisation (RFC 3986 section 6.2.2.2):
percent-encoded unreserved characters (letters, digits, ``-._~``) are decoded, so ``/%61dmin``
cannot slip past the route of ``/admin``. Everything else, ``%2F`` included, stays as sent, and
``rest_of`` hands the unmatched rest of the raw path on byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Matched(Generic[T]):
    """The route for the request, and what of the path its prefix did not match."""

    target: T
    matched: str
    """The route's path, or its prefix (``""`` for the root prefix ``/``)."""
    consumed: int
    """Characters of the (normalised) path the match took: the rest starts there."""


@dataclass(frozen=True, slots=True)
class NotFound:
    """No route's path or prefix matches."""


@dataclass(frozen=True, slots=True)
class MethodNotAllowed(Generic[T]):
    """A route's path matches, but it takes none of this method."""

    allowed: tuple[str, ...]
    target: T
    """The route of the first of the ``allowed`` methods: whose path it is, for labels."""


MatchResult = Matched[T] | NotFound | MethodNotAllowed[T]
NOT_FOUND = NotFound()


class RouteTable(Generic[T]):
    """Exact paths and segment prefixes, each with the methods it takes, to targets."""

    __slots__ = ("_depth", "_exact", "_prefixes", "_root")

    def __init__(self, entries: Iterable[tuple[str, bool, Iterable[str], T]]) -> None:
        """``entries``: (path or prefix, is a prefix, methods, target). A path or prefix may
        appear in several entries with different methods; one method twice is a ``ValueError``.
        """
        exact: dict[str, dict[str, T]] = {}
        prefixes: dict[str, dict[str, T]] = {}
        for path, is_prefix, methods, target in entries:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} does not start with /")
            key = (path.rstrip("/") or "/") if is_prefix else path
            by_method = (prefixes if is_prefix else exact).setdefault(key, {})
            for method in methods:
                if method in by_method:
                    kind = "prefix" if is_prefix else "path"
                    raise ValueError(f"{kind} {key!r} takes {method} twice")
                by_method[method] = target
        self._exact = exact
        self._root = prefixes.pop("/", None)
        self._prefixes = prefixes
        self._depth = max((prefix.count("/") for prefix in prefixes), default=0)
        """Segments of the deepest prefix: no longer candidate can match."""

    def match(self, path: str, method: str) -> MatchResult[T]:
        """The route for ``path`` (normalised, see ``normalise``) and ``method``."""
        by_method = self._exact.get(path)
        if by_method is not None:
            return _pick(by_method, method, path, len(path))
        prefixes = self._prefixes
        if prefixes:
            candidate = path
            depth = self._depth
            if path.count("/") > depth:
                cut = 0
                for _ in range(depth):  # path[0] is the first "/"
                    cut = path.find("/", cut + 1)
                candidate = path[:cut]
            while candidate:
                by_method = prefixes.get(candidate)
                if by_method is not None:
                    return _pick(by_method, method, candidate, len(candidate))
                candidate = candidate[: candidate.rfind("/")]
        if self._root is not None and path.startswith("/"):
            return _pick(self._root, method, "", 0)
        return NOT_FOUND

    def __len__(self) -> int:
        return (
            sum(map(len, self._exact.values()))
            + sum(map(len, self._prefixes.values()))
            + (len(self._root) if self._root else 0)
        )


def _pick(by_method: Mapping[str, T], method: str, matched: str, consumed: int) -> MatchResult[T]:
    target = by_method.get(method)
    if target is None:
        allowed = tuple(sorted(by_method))
        return MethodNotAllowed(allowed, by_method[allowed[0]])
    return Matched(target, matched, consumed)


_UNRESERVED_ESCAPE = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


def _decoded(escape: re.Match[str]) -> str:
    return chr(int(escape.group(1), 16))


def normalise(raw_path: str) -> str:
    """``raw_path`` with percent-encoded unreserved characters decoded (``%7E`` -> ``~``)."""
    if "%" not in raw_path:
        return raw_path
    return _UNRESERVED_ESCAPE.sub(_decoded, raw_path)


def rest_of(raw_path: str, consumed: int) -> str:
    """The raw path after the first ``consumed`` characters of its normalised form."""
    if "%" not in raw_path:
        return raw_path[consumed:]
    index = 0
    for _ in range(consumed):
        if raw_path[index] == "%" and _UNRESERVED_ESCAPE.match(raw_path, index):
            index += 3
        else:
            index += 1
    return raw_path[index:]


def has_dot_segment(raw_path: str) -> bool:
    """Whether the path, decoded, has a ``.`` or ``..`` segment (``/`` or ``\\`` separated).

    Such a path could climb out of a rewritten prefix on an upstream that resolves it (and some
    decode ``%2F`` or read ``\\`` as ``/`` before they do), so it is refused rather than
    resolved. Decoded twice (``%252e`` is ``%2e`` to an upstream that decodes again), and a
    segment's path parameters (``..;x``, which Servlet containers drop) do not count.
    """
    if "." not in raw_path and "%" not in raw_path:
        return False
    once = unquote(raw_path)  # a malformed escape stays as it is; bytes not UTF-8 become U+FFFD
    for decoded in (once, unquote(once)):
        for segment in _SEPARATORS.split(decoded):
            if segment.partition(";")[0] in (".", ".."):
                return True
    return False


_SEPARATORS = re.compile(r"[/\\]")
