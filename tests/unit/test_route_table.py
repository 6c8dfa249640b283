"""The route table's matcher and its path rules, with example paths and generated ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.route_table import (
    Matched,
    MethodNotAllowed,
    NotFound,
    RouteTable,
    has_dot_segment,
    normalise,
    rest_of,
)

ALL = ("GET", "POST")


def table(*entries: tuple[str, bool, tuple[str, ...]]) -> RouteTable[str]:
    """Targets are named after their entry: ``=path`` for exact, ``path*`` for prefixes."""
    return RouteTable(
        (path, prefix, methods, f"{path}*" if prefix else f"={path}")
        for path, prefix, methods in entries
    )


def target(result: object) -> str:
    assert isinstance(result, Matched), result
    return str(result.target)


USERS = table(
    ("/api/v1/users", True, ALL),
    ("/api", True, ALL),
    ("/api/v1/users/me", False, ("GET",)),
    ("/health-check", False, ("GET",)),
)


@pytest.mark.parametrize(
    ("path", "expected", "consumed"),
    [
        ("/api/v1/users", "/api/v1/users*", 13),
        ("/api/v1/users/", "/api/v1/users*", 13),
        ("/api/v1/users/7", "/api/v1/users*", 13),
        ("/api/v1/users/7/orders", "/api/v1/users*", 13),
        ("/api/v1/users-x", "/api*", 4),  # not on a segment boundary: the shorter prefix
        ("/api/v1/user", "/api*", 4),
        ("/api", "/api*", 4),
        ("/api/", "/api*", 4),
        ("/api/v1/users/me", "=/api/v1/users/me", 16),  # exact beats the prefix
        ("/api/v1/users/me/x", "/api/v1/users*", 13),  # exact is exact: not below it
        ("/health-check", "=/health-check", 13),
    ],
)
def test_the_longest_match_on_a_segment_boundary_wins(
    path: str, expected: str, consumed: int
) -> None:
    result = USERS.match(path, "GET")
    assert target(result) == expected
    assert isinstance(result, Matched)
    assert result.consumed == consumed


@pytest.mark.parametrize(
    "path", ["/", "/apix", "/ap", "/health-check/", "/health", "", "api", "//api"]
)
def test_a_path_no_route_matches_is_not_found(path: str) -> None:
    assert isinstance(USERS.match(path, "GET"), NotFound)


def test_a_method_the_route_does_not_take_is_not_allowed_with_the_methods_it_takes() -> None:
    assert USERS.match("/api/v1/users/me", "DELETE") == MethodNotAllowed(
        ("GET",), "=/api/v1/users/me"
    )
    assert USERS.match("/api/v1/users/9", "PUT") == MethodNotAllowed(
        ("GET", "POST"), "/api/v1/users*"
    )
    # the path decides the route: a shorter prefix taking PUT does not catch it
    both = table(("/a", True, ("PUT",)), ("/a/b", True, ("GET",)))
    assert both.match("/a/b/c", "PUT") == MethodNotAllowed(("GET",), "/a/b*")
    assert target(both.match("/a/c", "PUT")) == "/a*"


def test_one_path_may_send_methods_to_different_routes() -> None:
    split = RouteTable(
        [("/orders", True, ("GET", "HEAD"), "reads"), ("/orders", True, ("POST",), "writes")]
    )
    assert target(split.match("/orders/1", "GET")) == "reads"
    assert target(split.match("/orders", "POST")) == "writes"
    assert split.match("/orders", "DELETE") == MethodNotAllowed(("GET", "HEAD", "POST"), "reads")
    assert split.match("/orders", "PUT") == MethodNotAllowed(("GET", "HEAD", "POST"), "reads")
    assert len(split) == 3


def test_a_method_given_twice_for_one_path_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix '/orders' takes GET twice"):
        RouteTable([("/orders/", True, ("GET",), 1), ("/orders", True, ("GET",), 2)])
    with pytest.raises(ValueError, match="path '/x' takes POST twice"):
        RouteTable([("/x", False, ("POST",), 1), ("/x", False, ("POST", "GET"), 2)])
    with pytest.raises(ValueError, match="does not start with /"):
        RouteTable([("x", False, ("GET",), 1)])


def test_the_root_prefix_takes_every_path_nothing_longer_takes() -> None:
    root = table(("/", True, ALL), ("/api", True, ALL), ("/exact", False, ALL))
    assert target(root.match("/anything/at/all", "GET")) == "/*"
    assert target(root.match("/", "GET")) == "/*"
    assert target(root.match("/api/x", "GET")) == "/api*"
    assert target(root.match("/exact", "GET")) == "=/exact"
    assert target(root.match("/exact/below", "GET")) == "/*"
    root_match = root.match("/anything", "POST")
    assert isinstance(root_match, Matched)
    assert (root_match.matched, root_match.consumed) == ("", 0)
    assert isinstance(root.match("no-slash", "GET"), NotFound)
    assert root.match("/x", "PATCH") == MethodNotAllowed(ALL, "/*")


def test_a_prefix_written_with_a_trailing_slash_is_the_same_prefix() -> None:
    slashed = table(("/docs/", True, ("GET",)))
    assert target(slashed.match("/docs", "GET")) == "/docs/*"
    assert target(slashed.match("/docs/a", "GET")) == "/docs/*"
    assert isinstance(slashed.match("/docsx", "GET"), NotFound)


def test_an_empty_table_finds_nothing() -> None:
    empty: RouteTable[str] = RouteTable([])
    assert isinstance(empty.match("/a", "GET"), NotFound)
    assert len(empty) == 0


segment = st.text(alphabet="abc", min_size=1, max_size=3)
paths = st.lists(segment, min_size=0, max_size=5).map(lambda parts: "/" + "/".join(parts))


@given(prefixes=st.lists(paths, min_size=1, max_size=12, unique=True), path=paths)
def test_property_the_longest_matching_prefix_wins(prefixes: list[str], path: str) -> None:
    """Against the obvious definition: of the prefixes that equal the path or are followed in
    it by a ``/``, the longest; a prefix that only shares characters never matches."""
    routes = table(*((prefix, True, ("GET",)) for prefix in prefixes))

    def covers(prefix: str) -> bool:
        key = prefix.rstrip("/") or "/"
        return key == "/" or path == key or path.startswith(key + "/")

    matching = [prefix for prefix in prefixes if covers(prefix)]
    result = routes.match(path, "GET")
    if not matching:
        assert isinstance(result, NotFound)
        return
    longest = max(matching, key=lambda prefix: len(prefix.rstrip("/")))
    assert target(result) == f"{longest}*"
    assert isinstance(result, Matched)
    assert path[result.consumed :] == path[len(longest.rstrip("/")) :]


@given(prefixes=st.lists(paths, min_size=1, max_size=8, unique=True), path=paths)
def test_property_an_exact_path_wins_over_every_prefix(prefixes: list[str], path: str) -> None:
    routes = RouteTable(
        [*((prefix, True, ("GET",), "prefix") for prefix in prefixes), (path, False, ("GET",), "x")]
    )
    assert target(routes.match(path, "GET")) == "x"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("/plain/path", "/plain/path"),
        ("/%61dmin", "/admin"),
        ("/%7Euser/%7euser", "/~user/~user"),
        ("/a%2Fb", "/a%2Fb"),  # a reserved character stays encoded
        ("/a%2fb%20c", "/a%2fb%20c"),
        ("/%2E%2e/%2D%5F%30%39%41%5A%61%7A", "/../-_09AZaz"),
        ("/%", "/%"),
        ("/%zz%4", "/%zz%4"),
        ("/%40%5B%60%7B%2F%3A", "/%40%5B%60%7B%2F%3A"),  # @ [ ` { / : are not unreserved
    ],
)
def test_unreserved_escapes_are_decoded_for_matching_only(raw: str, normalised: str) -> None:
    assert normalise(raw) == normalised


@pytest.mark.parametrize(
    ("raw", "consumed", "rest"),
    [
        ("/api/v1/users/7", 13, "/7"),
        ("/api/v1/%75sers/%7Ex%2F", 13, "/%7Ex%2F"),  # "%75" counts as one character
        ("/%61pi/x", 4, "/x"),
        ("/api", 4, ""),
        ("/a%2Fb/c", 6, "/c"),  # %2F is not decoded, so it is three characters
        ("/x", 0, "/x"),
    ],
)
def test_the_rest_of_the_raw_path_passes_on_byte_for_byte(
    raw: str, consumed: int, rest: str
) -> None:
    assert rest_of(raw, consumed) == rest


@given(st.lists(st.sampled_from(["a", "%61", "%2F", "/", "%7e", "~", "%20"]), max_size=12))
def test_property_the_rest_is_the_raw_tail_of_the_normalised_match(parts: list[str]) -> None:
    raw = "/" + "".join(parts)
    normalised = normalise(raw)
    for consumed in range(len(normalised) + 1):
        rest = rest_of(raw, consumed)
        assert raw.endswith(rest)
        assert normalise(rest) == normalised[consumed:]


@pytest.mark.parametrize(
    "path",
    [
        "/a/../b",
        "/a/..",
        "/..",
        "/a/./b",
        "/.",
        "/a/%2e%2e/b",
        "/a/%2E%2E",
        "/a/.%2e/b",
        "/a/..%2Fb",
        "/a/..%2f..%2fetc",
        "/a/%2e%2e%5cb",
        "/a/..\\b",
        "/a\\..\\b",
        "/a/..;jsessionid=1/b",
        "/a/.;x",
        "/a/%252e%252e/b",
        "/a/%252E%252e%252fb",
    ],
)
def test_a_dot_segment_in_any_spelling_is_found(path: str) -> None:
    assert has_dot_segment(path)


@pytest.mark.parametrize(
    "path",
    ["/a/b", "/a/.hidden", "/a/b.json", "/a/...", "/a/..b", "/v1.2/x", "/%41", "/", "/a/b;v=1",
     "/a/%2525", "/a/...;x"],
)  # fmt: skip
def test_dots_inside_a_segment_are_fine(path: str) -> None:
    assert not has_dot_segment(path)


class CountingDict(dict[str, dict[str, str]]):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.lookups = 0

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.lookups += 1
        return super().get(key, default)


def test_a_path_of_thousands_of_segments_is_walked_only_as_deep_as_the_deepest_prefix() -> None:
    routes = table(("/a/b/c", True, ("GET",)), ("/a", True, ("GET",)))
    counting = CountingDict(routes._prefixes)
    routes._prefixes = counting  # type: ignore[assignment]
    deep = "/a/b/c" + "/x" * 20_000
    assert target(routes.match(deep, "GET")) == "/a/b/c*"
    assert target(routes.match("/a/b/x" + "/y" * 20_000, "GET")) == "/a*"
    assert isinstance(routes.match("/z" * 20_000, "GET"), NotFound)
    assert counting.lookups == 1 + 3 + 3  # as deep as the deepest prefix, never deeper


def test_an_exact_path_is_exact_to_its_trailing_slash() -> None:
    routes = table(("/docs/", False, ("GET",)), ("/taX", True, ("GET",)))
    assert target(routes.match("/docs/", "GET")) == "=/docs/"
    assert isinstance(routes.match("/docs", "GET"), NotFound)
    # a prefix keeps every character but its trailing slashes
    assert target(routes.match("/taX/1", "GET")) == "/taX*"
    assert isinstance(routes.match("/ta/1", "GET"), NotFound)


def test_the_size_of_a_table_counts_every_path_and_method() -> None:
    assert len(table(("/", True, ALL), ("/a", True, ("GET",)), ("/b", False, ALL))) == 5
    assert len(table(("/", True, ALL))) == 2


def reference_lookups(path: str, prefixes: list[str]) -> int:
    """How many candidates the walk tries: from the path cut to the deepest prefix's number of
    segments (or the whole path), down to the first segment, until one is a prefix."""
    depth = max(prefix.count("/") for prefix in prefixes)
    starts = [i for i, char in enumerate(path) if char == "/"]
    candidate = path if len(starts) <= depth else path[: starts[depth]]
    tried = 0
    while candidate:
        tried += 1
        if candidate in prefixes:
            return tried
        candidate = candidate[: candidate.rfind("/")]
    return tried


@given(
    prefixes=st.lists(
        st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=4).map(
            lambda parts: "/" + "/".join(parts)
        ),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    path=st.lists(st.sampled_from(["a", "b", ""]), max_size=8).map(lambda p: "/" + "/".join(p)),
)
def test_property_the_walk_tries_the_candidates_it_should_and_no_more(
    prefixes: list[str], path: str
) -> None:
    """Paths with empty segments (``//``) included: the walk starts at the right depth."""
    keys = [prefix for prefix in prefixes if prefix.rstrip("/") == prefix and prefix != "/"]
    if not keys:
        return
    routes = table(*((prefix, True, ("GET",)) for prefix in keys))
    counting = CountingDict(routes._prefixes)
    routes._prefixes = counting  # type: ignore[assignment]
    routes.match(path, "GET")
    assert counting.lookups == reference_lookups(path, keys)
