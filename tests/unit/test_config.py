"""The route table's file: what it inherits from the environment and every error it can have.

Each error is one line naming the file, the entry and the key, as ``resilient-gateway`` prints
it before exiting with 2.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import (
    ConfigError,
    GatewayConfig,
    default_config,
    json_schema,
    load_config,
    parse_config,
)
from gateway.settings import GatewaySettings

BASE = """
upstreams:
  backend:
    url: http://127.0.0.1:8001
    timeout_seconds: 2
    pool_size: 100
    max_concurrent_requests: 100
    circuit_breaker: {failure_threshold: 5, recovery_timeout_seconds: 30, half_open_max_calls: 1}
    retry_budget: {percent: 20, min_retries_per_second: 10}
routes:
  - name: data
    path: /api/v1/data
    methods: [GET]
    upstream: backend
    upstream_path: /flaky-data
  - name: users
    path_prefix: /api/v1/users
    rewrite_prefix: /users
    methods: [GET, POST, PUT, PATCH, DELETE]
    upstream: backend
    request_timeout_seconds: 10
    retry: {max_retries: 3, initial_backoff_seconds: 0.5, backoff_multiplier: 2,
            max_backoff_seconds: 10, on_status: [503], jitter: none, non_idempotent: false}
    rate_limit: {requests_per_window: 100, window_seconds: 60, algorithm: sliding_log,
                 key: "header:X-API-Key"}
"""


def settings(**values: object) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **values)  # type: ignore[arg-type]


def parse(text: str, **values: object) -> GatewayConfig:
    return parse_config(textwrap.dedent(text), settings(**values), "gateway.yaml")


def error_of(text: str, **values: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text, **values)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid config gateway.yaml: ")
    return message.removeprefix("invalid config gateway.yaml: ")


def test_the_issue_s_example_file_is_valid_and_means_what_it_says() -> None:
    config = parse(BASE)
    data, users = config.routes
    assert (data.match_path, data.is_prefix, data.target_path) == (
        "/api/v1/data",
        False,
        "/flaky-data",
    )
    assert (users.match_path, users.is_prefix, users.target_path) == (
        "/api/v1/users",
        True,
        "/users",
    )
    assert users.rate_limit.key_header == "x-api-key"
    assert data.rate_limit.key_header is None
    assert users.retry.on_status == [503]
    assert config.upstream_of(users).circuit_breaker.failure_threshold == 5


def test_a_key_left_out_takes_the_environment_s_setting() -> None:
    config = parse(
        """
        upstreams:
          one: {url: "http://a:1/"}
          two: {url: "http://b:2", circuit_breaker: {failure_threshold: 9}}
        routes:
          - {name: r, path: /r, upstream: one}
        """,
        failure_threshold=7,
        recovery_timeout_seconds=45,
        max_retries=1,
        rate_limit_requests_per_window=12,
        max_request_body_bytes=123,
        backend_timeout_seconds=1.5,
        retry_on_status="502,503",
    )
    one, two = config.upstreams["one"], config.upstreams["two"]
    assert one.base_url == "http://a:1"
    assert one.timeout_seconds == 1.5
    assert one.circuit_breaker.failure_threshold == 7
    assert two.circuit_breaker.failure_threshold == 9  # the file's key wins for its entry
    assert two.circuit_breaker.recovery_timeout_seconds == 45  # the rest still inherited
    route = config.routes[0]
    assert route.retry.max_retries == 1
    assert route.retry.on_status == [502, 503]
    assert route.rate_limit.requests_per_window == 12
    assert route.max_request_body_bytes == 123
    assert route.methods == ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    assert route.target_path == "/r"  # an exact path goes to the same path by default


def test_without_a_file_the_table_is_the_seed_s_one_route() -> None:
    config = default_config(settings(backend_url="http://up:9"))
    (route,) = config.routes
    assert (route.name, route.path, route.methods, route.target_path) == (
        "default",
        "/api/v1/data",
        ["GET"],
        "/flaky-data",
    )
    assert config.upstreams["backend"].url == "http://up:9"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("window_seconds: 60", "window_seconds: 0"),
            "routes[1] (users).rate_limit.window_seconds: Input should be greater than 0",
        ),
        (
            ("pool_size: 100", "pool_size: 0"),
            "upstreams.backend.pool_size: Input should be greater than or equal to 1",
        ),
        (
            ("jitter: none", "jitter: sometimes"),
            "routes[1] (users).retry.jitter: Input should be 'none', 'full', 'equal' or "
            "'decorrelated'",
        ),
        (
            ("rewrite_prefix: /users", "rewrite_prefix: /users\n    colour: blue"),
            "routes[1] (users).colour: Extra inputs are not permitted",
        ),
        (
            ("failure_threshold: 5,", "failure_treshold: 5,"),
            "upstreams.backend.circuit_breaker.failure_treshold: Extra inputs are not permitted",
        ),
        (
            ('key: "header:X-API-Key"', 'key: "cookie:session"'),
            "routes[1] (users).rate_limit.key: String should match pattern",
        ),
        (
            ("methods: [GET]", "methods: [GET, BREW]"),
            "routes[0] (data).methods[1]: Input should be 'GET', 'HEAD', 'POST'",
        ),
        (("url: http://127.0.0.1:8001", "url: ftp://x"), "upstreams.backend: url must be"),
        (("on_status: [503]", "on_status: [200]"), "routes[1] (users).retry.on_status[0]:"),
        (
            ("name: users", "name: us ers"),
            "routes[1] (us ers).name: String should match pattern",
        ),
    ],
)
def test_every_error_names_the_entry_and_the_key(change: tuple[str, str], expected: str) -> None:
    assert error_of(BASE.replace(*change)).startswith(expected)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("{name: r, upstream: backend}", "set exactly one of path and path_prefix"),
        (
            "{name: r, path: /a, path_prefix: /b, upstream: backend}",
            "set exactly one of path and path_prefix",
        ),
        (
            "{name: r, path: /a, rewrite_prefix: /b, upstream: backend}",
            "rewrite_prefix goes with path_prefix",
        ),
        (
            "{name: r, path_prefix: /a, upstream_path: /b, upstream: backend}",
            "upstream_path goes with path",
        ),
        ("{name: r, path: a, upstream: backend}", "path 'a' must start with /"),
        ("{name: r, path: /a/../b, upstream: backend}", "must not hold a . or .. segment"),
        ("{name: r, path: '/a?x=1', upstream: backend}", "must not hold a query"),
        ("{name: r, path: /ä, upstream: backend}", "must be printable ASCII"),
        ("{name: r, path: /a, methods: [GET, get], upstream: backend}", "a method twice"),
        ("{name: r, path: /a, methods: [], upstream: backend}", "at least 1 item"),
        (
            "{name: r, path: /a, upstream: backend, request_timeout_seconds: 1,"
            " retry: {max_retries: 3, initial_backoff_seconds: 1}}",
            "the retry backoff (1 + 2 + 4 = 7 s) exceeds request_timeout_seconds (1)",
        ),
        (
            "{name: r, path: /a, upstream: backend,"
            " retry: {initial_backoff_seconds: 2, max_backoff_seconds: 1}}",
            "max_backoff_seconds must not be smaller than initial_backoff_seconds",
        ),
    ],
)
def test_a_route_that_contradicts_itself_is_refused(route: str, expected: str) -> None:
    message = error_of(f"upstreams: {{backend: {{}}}}\nroutes:\n  - {route}\n")
    assert message.startswith("routes[0] (r")
    assert expected in message


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            "- {name: a, path: /a, upstream: nowhere}",
            "routes[0] (a).upstream: no upstream named 'nowhere' (upstreams: backend)",
        ),
        (
            "- {name: a, path: /a, upstream: backend}\n- {name: a, path: /b, upstream: backend}",
            "routes[1] (a).name: 'a' is also routes[0]'s name",
        ),
        (
            "- {name: a, path: /a, upstream: backend}\n"
            "- {name: b, path: /a, methods: [POST, GET], upstream: backend}",
            "routes[1] (b).path: '/a' POST is routes[0]'s already (routes[0] (a))",
        ),
        (
            "- {name: a, path_prefix: /a/, upstream: backend}\n"
            "- {name: b, path_prefix: /a, upstream: backend}",
            "routes[1] (b).path_prefix: '/a' GET is routes[0]'s already",
        ),
        (
            "- {name: a, path: /metrics, upstream: backend}",
            "routes[0] (a).path: '/metrics' is the gateway's own /metrics",
        ),
        (
            "- {name: a, path_prefix: /admin/x, upstream: backend}",
            "routes[0] (a).path_prefix: '/admin/x' is the gateway's own /admin",
        ),
        (
            "- {name: a, path: /a, upstream: backend, request_timeout_seconds: 1,"
            " retry: {max_retries: 0}}",
            "routes[0] (a).request_timeout_seconds: 1 is shorter than upstream 'backend''s "
            "timeout_seconds (2)",
        ),
        (
            "- {name: a, path: /a, upstream: backend, min_attempt_seconds: 3,"
            " request_timeout_seconds: 20}",
            "routes[0] (a).min_attempt_seconds: 3 exceeds upstream 'backend''s timeout_seconds",
        ),
    ],
)
def test_what_only_the_whole_file_can_tell_is_checked_too(routes: str, expected: str) -> None:
    text = "upstreams:\n  backend: {timeout_seconds: 2}\nroutes:\n" + textwrap.indent(routes, "  ")
    assert error_of(text).startswith(expected)


def test_a_catch_all_prefix_is_allowed_above_the_gateway_s_own_paths() -> None:
    config = parse("upstreams: {b: {}}\nroutes: [{name: all, path_prefix: /, upstream: b}]")
    assert config.routes[0].match_path == "/"
    assert config.routes[0].target_path == ""  # "/" + the rest: the path unchanged


def test_several_errors_are_all_named_on_one_line() -> None:
    message = error_of(
        "upstreams: {b: {pool_size: 0, timeout_seconds: -1}}\n"
        "routes: [{name: r, path: /r, upstream: b}]\n"
    )
    assert "upstreams.b.timeout_seconds" in message
    assert "upstreams.b.pool_size" in message
    assert "; " in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [", "line 1, column 5:"),
        ("routes: x\nroutes: y\n", "line 2, column 1: the key 'routes' is given twice"),
        ("- 1\n- 2\n", "the file must be a mapping with upstreams and routes"),
        ("", "the file must be a mapping"),
        ("upstreams: {}\nroutes: []\n", "upstreams: Dictionary should have at least 1 item"),
        ("routes: [{name: r, path: /r, upstream: b}]\n", "upstreams: Field required"),
        ("upstreams: {b: {}}\nroutes: [{name: r, path: /r, upstream: b}]\nx: 1\n", "x: Extra"),
        ("upstreams: {'bad name': {}}\nroutes: []\n", "upstreams.bad name.[key]"),
        ("!!python/object:os.system {}\n", "line 1, column 1:"),  # no code from YAML
    ],
)
def test_a_file_that_is_not_a_config_says_where(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_json_is_yaml_too(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(
        '{"upstreams": {"b": {"url": "http://x:1"}},'
        ' "routes": [{"name": "r", "path": "/r", "upstream": "b"}]}'
    )
    assert load_config(path, settings()).routes[0].name == "r"


def test_a_file_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot read config .*missing.yaml: No such file"):
        load_config(tmp_path / "missing.yaml", settings())
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"binary.yaml: not UTF-8"):
        load_config(binary, settings())
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (4 * 1024 * 1024 + 1))
    with pytest.raises(ConfigError, match=r"huge.yaml: larger than 4194304 bytes"):
        load_config(huge, settings())


def test_the_schema_describes_the_file_and_what_each_key_inherits() -> None:
    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) == {"upstreams", "routes"}
    assert schema["additionalProperties"] is False
    breaker = schema["$defs"]["CircuitBreakerConfig"]["properties"]["failure_threshold"]
    assert breaker["x-env"] == "FAILURE_THRESHOLD"
    assert breaker["minimum"] == 1
    route = schema["$defs"]["RouteConfig"]
    assert set(route["required"]) == {"name", "upstream"}
    key = schema["$defs"]["RateLimitConfig"]["properties"]["key"]
    assert key["default"] == "ip"
    assert "header:NAME" in key["description"]
