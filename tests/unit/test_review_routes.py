"""Review of the route table (branch review-12): each test shows one finding and fails today.

No sockets, no sleeping: configs parsed in memory, tables built with fake upstreams.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest
from dependency_injector import providers

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock
from adapters.event_log import EventLog
from adapters.http.client_identity import ClientIdentity
from adapters.rate_limit.redis_store import RedisRateLimiter
from application.route_table import Matched, normalise
from domain.breaker import BreakerState
from gateway.config import (
    ConfigError,
    GatewayConfig,
    RateLimitConfig,
    UpstreamConfig,
    load_config,
    parse_config,
)
from gateway.containers import Container, Limiters, every_upstream
from gateway.routing import RouteTables, TableDeps, build_table
from gateway.settings import GatewaySettings

SETTINGS = GatewaySettings(_env_file=None)
ONE_UPSTREAM = "upstreams: {a: {url: 'http://a:1'}}\n"


def parse(text: str) -> GatewayConfig:
    return parse_config(textwrap.dedent(text), SETTINGS, "review.yaml")


def deps_for(clock: FakeClock) -> TableDeps:
    def upstream(name: str, config: UpstreamConfig) -> FakeUpstream:
        return FakeUpstream(clock=clock)

    return TableDeps(
        settings=SETTINGS,
        clock=clock,
        sleeper=clock,
        rng=random.Random(1),
        events=EventLog(),
        identity=ClientIdentity(),
        upstream_factory=upstream,
        limiter_factory=Limiters(SETTINGS, clock),
    )


# --- the file: every error one line ----------------------------------------------------------


def test_a_complex_yaml_key_is_a_one_line_config_error() -> None:
    """``_UniqueKeyLoader._mapping`` does ``key in result`` on whatever YAML built: a sequence
    or mapping key (``? [a, b]``) raises TypeError, which nobody catches (not ``check``, not the
    start, not ``RouteTables.reload``). SafeLoader's own constructor says "found unhashable key".
    """
    with pytest.raises(ConfigError):
        parse("? [a, b]\n: 1\n" + ONE_UPSTREAM)


async def test_a_reload_of_a_file_with_a_complex_key_is_an_error_not_an_exception(
    tmp_path: Path,
) -> None:
    """The same file on SIGHUP: ``reload()`` catches only ConfigError and ValueError, so the
    TypeError escapes the SIGHUP task (an unretrieved task exception), and ``/metrics`` keeps
    saying the last reload succeeded."""
    path = tmp_path / "gateway.yaml"
    valid = ONE_UPSTREAM + "routes: [{name: r, path: /x, upstream: a}]\n"
    path.write_text(valid)
    deps = deps_for(FakeClock())
    tables = RouteTables(build_table(load_config(path, SETTINGS), deps), deps, str(path))
    path.write_text("? [a, b]\n: 1\n" + valid)
    try:
        assert await tables.reload() is False
        assert tables.config_report()["last_reload"]["result"] == "error"
    finally:
        await tables.aclose()


def test_an_integer_too_long_for_python_is_a_one_line_config_error() -> None:
    """PyYAML's int constructor raises ValueError past 4300 digits (Python's int limit): not a
    YAMLError, so ``parse_config`` lets it out; the start (``cli._config`` catches ConfigError
    only) and ``check`` end in a traceback."""
    with pytest.raises(ConfigError):
        parse(
            "upstreams: {a: {url: 'http://a:1', pool_size: 1" + "0" * 5000 + "}}\n"
            "routes: [{name: r, path: /x, upstream: a}]\n"
        )


def test_a_yaml_merge_key_may_be_overridden() -> None:
    """``<<: *anchor`` then a key of the anchor's is YAML's way to inherit and override; the
    unique-key loader sees the merged key and the override as "the key given twice"."""
    config = parse(
        """
        upstreams:
          a: &base {url: "http://a:1", timeout_seconds: 1}
          b:
            <<: *base
            url: "http://b:1"
        routes:
          - {name: r, path: /x, upstream: b}
        """
    )
    assert config.upstreams["b"].url == "http://b:1"
    assert config.upstreams["b"].timeout_seconds == 1


# --- what validates must serve ---------------------------------------------------------------

ACCEPTED_BUT_UNSERVABLE = {
    # served_methods adds HEAD to the GET route: RouteTable raises "takes HEAD twice"
    "get-and-head-routes": ONE_UPSTREAM
    + "routes: [{name: r, path: /x, upstream: a, methods: [GET]},"
    " {name: r2, path: /x, upstream: a, methods: [HEAD]}]\n",
    # FastAPI's add_api_route reads {..} as a parameter: AssertionError / ValueError
    "unknown-convertor": ONE_UPSTREAM + "routes: [{name: r, path: '/a/{x:nope}', upstream: a}]\n",
    "prefix-named-path": ONE_UPSTREAM
    + "routes: [{name: r, path_prefix: '/a/{path}', upstream: a}]\n",
}


@pytest.mark.parametrize("text", ACCEPTED_BUT_UNSERVABLE.values(), ids=ACCEPTED_BUT_UNSERVABLE)
def test_a_config_that_validates_also_builds_the_app(text: str) -> None:
    """``check`` says ok and prints the table, then the start dies with a traceback (not the
    one line and exit 2)."""
    try:
        config = parse(text)
    except ConfigError:
        return  # refused with its one line: fine
    container = Container()
    container.settings.override(providers.Object(SETTINGS))
    container.config.override(providers.Object(config))
    container.upstream_factory.override(providers.Object(every_upstream(FakeUpstream())))
    container.app()


def test_a_route_path_with_an_escaped_unreserved_character_is_reachable_or_refused() -> None:
    """Requests are matched after ``normalise`` (``%7E`` -> ``~``) but the table's own paths
    are not normalised: ``path: /%7Euser`` validates and no request can ever reach it (neither
    ``/%7Euser`` nor ``/~user``). Same for ``/%61pi`` and for lower-case hex (``%c3%a9`` is
    not ``%C3%A9`` either)."""
    text = ONE_UPSTREAM + "routes: [{name: r, path: /%7Euser, upstream: a}]\n"
    try:
        config = parse(text)
    except ConfigError:
        return
    table = build_table(config, deps_for(FakeClock()))
    assert isinstance(table.matcher.match(normalise("/%7Euser"), "GET"), Matched)


# --- reload ---------------------------------------------------------------------------------

FORCED = """
upstreams:
  a: {url: "http://a:1", circuit_breaker: {recovery_timeout_seconds: 30}}
routes:
  - {name: r, path: /x, upstream: a}
"""


async def test_an_operators_forced_open_breaker_survives_a_reload_of_another_breaker_key(
    tmp_path: Path,
) -> None:
    """An operator forced ``a`` open (admin API). Someone changes only its
    ``recovery_timeout_seconds`` and sends SIGHUP: ``_build_upstream`` builds a new CLOSED
    breaker, and traffic flows to the upstream the operator shut off, with no log of it."""
    path = tmp_path / "gateway.yaml"
    path.write_text(FORCED)
    deps = deps_for(FakeClock())
    tables = RouteTables(build_table(load_config(path, SETTINGS), deps), deps, str(path))
    tables.table.upstreams["a"].breaker.force_open()
    path.write_text(FORCED.replace("recovery_timeout_seconds: 30", "recovery_timeout_seconds: 60"))
    try:
        assert await tables.reload()
        assert tables.table.upstreams["a"].breaker.state is BreakerState.FORCED_OPEN
    finally:
        await tables.aclose()


async def test_redis_keys_of_the_two_algorithms_differ() -> None:
    """A reload that changes only ``rate_limit.algorithm`` builds a limiter with the same key
    prefix: the sliding log's sorted set and the counter's hash share one key per client, and
    every active client's next decision is a WRONGTYPE error (fail open: no limit; fail closed:
    503) until the old key expires."""
    settings = GatewaySettings(_env_file=None, rate_limit_storage_url="redis://127.0.0.1:1/0")
    limiters = Limiters(settings, FakeClock())

    def limiter(algorithm: str) -> RedisRateLimiter:
        config = RateLimitConfig.model_validate(
            {"algorithm": algorithm, "enabled": True}, context={"settings": settings}
        )
        built = limiters("orders", config)
        assert isinstance(built, RedisRateLimiter)
        return built

    try:
        assert limiter("sliding_log").key("c") != limiter("sliding_counter").key("c")
    finally:
        await limiters.aclose()


def test_the_supervisors_sighup_survives_a_file_that_breaks_the_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--workers N``, ``ValidatingMultiprocess.handle_hup`` validates through
    ``cli._config``, which turns only ConfigError into its one line: the TypeError of a complex
    YAML key (or the ValueError of a 5000-digit number) escapes ``handle_hup``, and uvicorn's
    supervisor loop has no handler around it: the supervisor dies on SIGHUP."""
    from uvicorn.supervisors import Multiprocess

    from gateway.cli import ValidatingMultiprocess

    path = tmp_path / "gateway.yaml"
    path.write_text(
        "? [a, b]\n: 1\n" + ONE_UPSTREAM + "routes: [{name: r, path: /x, upstream: a}]\n"
    )
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    restarted: list[bool] = []
    monkeypatch.setattr(Multiprocess, "handle_hup", lambda self: restarted.append(True))
    supervisor = object.__new__(ValidatingMultiprocess)
    supervisor.handle_hup()  # must neither raise nor restart the workers
    assert restarted == []
