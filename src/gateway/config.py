"""The route table's file (``GATEWAY_CONFIG``): upstreams and routes, validated once, in full.

The file is YAML (so JSON works too) and becomes frozen pydantic models here, in the composition
root; the domain and the application never see it. Every key an entry leaves out takes the
environment's setting of the same meaning (``FAILURE_THRESHOLD`` for
``circuit_breaker.failure_threshold``...), so the environment is the default every route and
upstream inherits, and a key in the file overrides it for its entry. The models are validated
with the settings as pydantic's ``context``; without one (``resilient-gateway schema``) the
defaults are the settings' own defaults.

Any error becomes one ``ConfigError`` line naming the file, the entry and the key::

    invalid config gateway.yaml: routes[1] (users).rate_limit.window_seconds: Input should be
    greater than 0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from application.route_table import normalise
from gateway.settings import GatewaySettings, check_url

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
METHODS: tuple[Method, ...] = get_args(Method)
"""Every method a route may take; a route that names none takes all of them."""
GATEWAY_PATHS = ("/health", "/metrics", "/dashboard", "/admin", "/docs", "/redoc", "/openapi.json")
"""The gateway's own endpoints: no route may claim them (a route of ``/`` goes round them)."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_HEADER_KEY = re.compile(r"^header:([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64})$")
MAX_CONFIG_BYTES = 4 * 1024 * 1024
_GATEWAY_OWNED_HEADERS = frozenset(
    {
        "host",
        "forwarded",
        "x-real-ip",
        "x-request-id",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "content-length",
    }
)
"""Headers a route's rate limit cannot be keyed on: hop-by-hop, or owned by the gateway."""
RESERVED_ROUTE_NAMES = frozenset({"unmatched"})
"""Labels the gateway gives requests no route took."""


class ConfigError(Exception):
    """A config file that cannot be served; ``str()`` is the one line to print."""


def _inherit(setting: str, description: str) -> Any:
    """A field whose default is the environment setting ``setting`` (and its bounds)."""
    source = GatewaySettings.model_fields[setting]
    bounds: dict[str, Any] = {}
    for item in source.metadata:
        for attribute in ("gt", "ge", "lt", "le", "min_length", "max_length"):
            if isinstance(item, getattr(annotated_types, _BOUND_TYPES[attribute])):
                bounds[attribute] = getattr(item, attribute)
    default = source.default
    if isinstance(default, frozenset):
        default = sorted(default)
    return Field(
        default,
        description=f"{description} Default: the environment's {setting.upper()}.",
        json_schema_extra={"x-env": setting.upper()},
        **bounds,
    )


_BOUND_TYPES = {
    "gt": "Gt",
    "ge": "Ge",
    "lt": "Lt",
    "le": "Le",
    "min_length": "MinLen",
    "max_length": "MaxLen",
}


class _Entry(BaseModel):
    """A part of the file: unknown keys refused, frozen, omitted keys from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _inherit_settings(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data  # pydantic says what it expected
        settings = (info.context or {}).get("settings")
        filled = dict(data)
        for name, field in cls.model_fields.items():
            if name in filled:
                continue
            setting = _env_name(field)
            if setting is not None and settings is not None:
                value = getattr(settings, setting.lower())
                filled[name] = sorted(value) if isinstance(value, frozenset) else value
            elif _is_entry(field.annotation):
                filled[name] = {}  # a nested part left out: all of its keys inherited
        return filled


def _env_name(field: FieldInfo) -> str | None:
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        name = extra.get("x-env")
        return name if isinstance(name, str) else None
    return None


def _is_entry(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, _Entry)


class CircuitBreakerConfig(_Entry):
    """An upstream's breaker (Kong: passive health checks; Envoy: outlier detection)."""

    failure_threshold: int = _inherit("failure_threshold", "Consecutive failures that open it.")
    recovery_timeout_seconds: float = _inherit(
        "recovery_timeout_seconds", "Time OPEN before a trial call."
    )
    half_open_max_calls: int = _inherit("half_open_max_calls", "Trial calls at once.")
    mode: Literal["consecutive", "failure_rate"] = _inherit("breaker_mode", "What opens it.")
    failure_rate_threshold: float = _inherit(
        "failure_rate_threshold", "Percent of failures in the window (failure_rate mode)."
    )
    sliding_window_type: Literal["count", "time"] = _inherit(
        "sliding_window_type", "Window of calls or of seconds."
    )
    sliding_window_size: int = _inherit("sliding_window_size", "Calls or seconds in the window.")
    minimum_calls: int = _inherit("minimum_calls", "Calls the window needs before a rate counts.")
    slow_call_duration_seconds: float = _inherit(
        "slow_call_duration_seconds", "An attempt longer than this is slow (0: off)."
    )
    slow_call_rate_threshold: float = _inherit(
        "slow_call_rate_threshold", "Percent of slow calls that opens it."
    )
    recovery_backoff_multiplier: float = _inherit(
        "recovery_backoff_multiplier", "Each failed trial multiplies the open time by this."
    )
    max_recovery_timeout_seconds: float = _inherit(
        "max_recovery_timeout_seconds", "Cap on the grown open time."
    )

    @model_validator(mode="after")
    def _check(self) -> CircuitBreakerConfig:
        if self.sliding_window_type == "count" and self.minimum_calls > self.sliding_window_size:
            raise ValueError(
                f"minimum_calls ({self.minimum_calls}) must not exceed sliding_window_size "
                f"({self.sliding_window_size}) of a count window"
            )
        if (
            self.recovery_backoff_multiplier > 1
            and self.max_recovery_timeout_seconds < self.recovery_timeout_seconds
        ):
            raise ValueError(
                "max_recovery_timeout_seconds must not be shorter than recovery_timeout_seconds "
                "when recovery_backoff_multiplier grows it"
            )
        return self


class RetryBudgetConfig(_Entry):
    """An upstream's retry budget (Envoy: ``retry_budget`` of a cluster's circuit breakers)."""

    percent: float = _inherit("retry_budget_percent", "Retries per 100 first attempts.")
    min_retries_per_second: float = _inherit(
        "retry_budget_min_retries_per_second", "Floor of the budget."
    )


class UpstreamConfig(_Entry):
    """A service the gateway calls (Kong: service + upstream; Envoy: cluster; Traefik: service).

    Its breaker, bulkhead, retry budget and connection pool are shared by every route to it.
    """

    url: str = _inherit("backend_url", "Base URL, http:// or https://.")
    timeout_seconds: float = _inherit("backend_timeout_seconds", "Time one attempt may take.")
    pool_size: int = _inherit("upstream_pool_size", "Connections kept open at most.")
    max_concurrent_requests: int = _inherit(
        "max_concurrent_upstream_requests", "Calls in flight at most (the bulkhead)."
    )
    client: Literal["httptools", "aiohttp", "httpx"] = _inherit(
        "upstream_client", "HTTP client adapter."
    )
    max_response_header_bytes: int = _inherit(
        "max_upstream_header_bytes", "Largest header section accepted."
    )
    max_response_headers: int = _inherit("max_upstream_headers", "Most header fields accepted.")
    max_response_body_bytes: int = _inherit(
        "max_upstream_body_bytes", "Largest body passed on (past it: 502, or cut once streamed)."
    )
    stream_idle_timeout_seconds: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="Longest silence between two pieces of a text/event-stream answer (SSE); "
        "past it the stream is cut. Other answers are bounded by timeout_seconds.",
    )
    # Left out: every key of the part inherited (filled in by ``_inherit_settings``; the
    # factories only keep the schema from calling the parts required).
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    retry_budget: RetryBudgetConfig = Field(default_factory=RetryBudgetConfig)

    @model_validator(mode="after")
    def _check(self) -> UpstreamConfig:
        check_url(self.url, ("http", "https"), "url must be an http:// or https:// URL with a host")
        breaker = self.circuit_breaker
        if breaker.recovery_timeout_seconds < self.timeout_seconds:
            raise ValueError(
                f"circuit_breaker.recovery_timeout_seconds ({breaker.recovery_timeout_seconds:g})"
                f" must not be shorter than timeout_seconds ({self.timeout_seconds:g})"
            )
        slow = breaker.slow_call_duration_seconds
        if slow and slow >= self.timeout_seconds:
            raise ValueError(
                f"circuit_breaker.slow_call_duration_seconds ({slow:g}) must be shorter than "
                f"timeout_seconds ({self.timeout_seconds:g})"
            )
        return self

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")


class RetryConfig(_Entry):
    """A route's retries (Kong: ``retries``; Envoy: ``retry_policy``; Traefik: retry middleware)."""

    max_retries: int = _inherit("max_retries", "Retries after the first attempt.")
    initial_backoff_seconds: float = _inherit("initial_backoff_seconds", "First wait.")
    backoff_multiplier: float = _inherit("backoff_multiplier", "Growth of each wait.")
    max_backoff_seconds: float = _inherit("max_backoff_seconds", "Cap on one wait.")
    on_status: list[Annotated[int, Field(ge=400, le=599)]] = _inherit(
        "retry_on_status", "Statuses retried."
    )
    jitter: Literal["none", "full", "equal", "decorrelated"] = _inherit(
        "backoff_jitter", "Randomisation of each wait."
    )
    non_idempotent: bool = Field(
        False,
        description="Retry POST and PATCH too (false: only GET, HEAD, OPTIONS, PUT, DELETE).",
    )

    @model_validator(mode="after")
    def _check(self) -> RetryConfig:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("max_backoff_seconds must not be smaller than initial_backoff_seconds")
        return self

    def schedule(self) -> list[float]:
        """The waits before each retry, capped, without jitter."""
        return [
            min(self.initial_backoff_seconds * self.backoff_multiplier**n, self.max_backoff_seconds)
            for n in range(self.max_retries)
        ]


class RateLimitConfig(_Entry):
    """A route's limit per client (Kong: rate-limiting plugin; Traefik: rateLimit middleware)."""

    enabled: bool = _inherit("rate_limit_enabled", "Whether the route is limited.")
    requests_per_window: int = _inherit("rate_limit_requests_per_window", "Requests per window.")
    window_seconds: float = _inherit("rate_limit_window_seconds", "The sliding window.")
    algorithm: Literal["sliding_log", "sliding_counter"] = _inherit(
        "rate_limit_algorithm", "Exact log or approximate counter."
    )
    key: str = Field(
        "ip",
        description='Whom a limit counts: "ip" (the client address, TRUSTED_PROXIES applied) '
        'or "header:NAME" (the header\'s value; without it, the client address).',
        pattern=r"^(ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64})$",
    )
    fail_open: bool = _inherit("rate_limit_fail_open", "Let requests through if Redis fails.")

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        name = value.removeprefix("header:").lower()
        if value.startswith("header:") and (
            name in _GATEWAY_OWNED_HEADERS or name.startswith("x-forwarded-")
        ):
            raise ValueError(
                f"{value!r}: the gateway drops or rewrites that header, so it cannot count "
                "clients by it (use ip: TRUSTED_PROXIES applies X-Forwarded-For)"
            )
        return value

    @property
    def key_header(self) -> str | None:
        """The header's name in lower case for ``header:NAME``, else None."""
        match = _HEADER_KEY.match(self.key)
        return match.group(1).lower() if match else None


class RouteConfig(_Entry):
    """A path of the gateway and where it goes (Kong: route; Envoy: route; Traefik: router)."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique; in metrics, logs, Redis keys.")
    path: str | None = Field(None, description="Exact path matched.")
    path_prefix: str | None = Field(
        None, description="Prefix matched on a segment boundary (itself and anything below)."
    )
    upstream: str = Field(description="Name of an entry of upstreams.")
    upstream_path: str | None = Field(
        None, description="With path: the path sent upstream (default: the same path)."
    )
    rewrite_prefix: str | None = Field(
        None,
        description='With path_prefix: replaces the matched prefix ("" strips it; default: '
        "unchanged).",
    )
    methods: list[Method] = Field(
        list(METHODS), min_length=1, description="Methods taken (default: all)."
    )
    request_timeout_seconds: float = _inherit(
        "request_timeout_seconds", "Deadline of a whole request (attempts and waits)."
    )
    min_attempt_seconds: float = _inherit(
        "min_attempt_seconds", "No attempt starts with less time left."
    )
    max_request_body_bytes: int = _inherit("max_request_body_bytes", "Largest request body.")
    preserve_host: bool = Field(
        False, description="Send the client's Host upstream (false: the upstream URL's host)."
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)

    @field_validator("methods", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [item.upper() if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> RouteConfig:
        if (self.path is None) == (self.path_prefix is None):
            raise ValueError("set exactly one of path and path_prefix")
        if self.path is not None and self.rewrite_prefix is not None:
            raise ValueError("rewrite_prefix goes with path_prefix; with path, use upstream_path")
        if self.path_prefix is not None and self.upstream_path is not None:
            raise ValueError("upstream_path goes with path; with path_prefix, use rewrite_prefix")
        for key in ("path", "path_prefix", "upstream_path", "rewrite_prefix"):
            value = getattr(self, key)
            if value is None or (key == "rewrite_prefix" and value == ""):
                continue
            problem = path_problem(value)
            if problem:
                raise ValueError(f"{key} {value!r} {problem}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("methods lists a method twice")
        waits = self.retry.schedule()
        if sum(waits) > self.request_timeout_seconds:
            schedule = " + ".join(f"{w:g}" for w in waits)
            raise ValueError(
                f"the retry backoff ({schedule} = {sum(waits):g} s) exceeds "
                f"request_timeout_seconds ({self.request_timeout_seconds:g})"
            )
        return self

    @property
    def match_path(self) -> str:
        """The path or prefix matched (a prefix without its trailing slash; ``/`` stays)."""
        if self.path is not None:
            return self.path
        assert self.path_prefix is not None
        return self.path_prefix.rstrip("/") or "/"

    @property
    def is_prefix(self) -> bool:
        return self.path_prefix is not None

    @property
    def target_path(self) -> str:
        """The exact route's upstream path, or the prefix route's replacement prefix."""
        if self.path is not None:
            return self.upstream_path if self.upstream_path is not None else self.path
        if self.rewrite_prefix is None:
            return "" if self.match_path == "/" else self.match_path
        return self.rewrite_prefix.rstrip("/")


class GatewayConfig(_Entry):
    """The whole file: named upstreams and an ordered list of routes."""

    FILE_KEYS: ClassVar[tuple[str, ...]] = ("upstreams", "routes")

    upstreams: dict[Annotated[str, Field(pattern=NAME_PATTERN)], UpstreamConfig] = Field(
        min_length=1
    )
    routes: list[RouteConfig] = Field(min_length=1)

    def upstream_of(self, route: RouteConfig) -> UpstreamConfig:
        return self.upstreams[route.upstream]


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a route's path, or None."""
    if not path.startswith("/"):
        return "must start with /"
    if "?" in path or "#" in path:
        return "must not hold a query or fragment"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "must not hold a . or .. segment"
    if not path.isascii() or not path.isprintable() or " " in path:
        return "must be printable ASCII without spaces (percent-encode the rest)"
    if normalise(path) != path or re.search(r"%(?![0-9A-F]{2})", path):
        return (
            "must write letters, digits and -._~ as themselves and other escapes as %XX with "
            f"upper-case hex ({normalise(path)!r})"
        )
    if "{" in path or "}" in path:
        return "must not hold { or } (a path is matched as it is written, with no parameters)"
    if "//" in path:
        return "must not hold an empty segment (//)"
    return None


def _cross_check(config: GatewayConfig, raw_routes: list[Any]) -> list[str]:
    """What one entry cannot know alone: names, references, overlaps, timeouts."""
    errors = []
    seen_names: dict[str, int] = {}
    claimed: dict[tuple[bool, str], dict[str, int]] = {}
    for index, route in enumerate(config.routes):
        where = _route_label(index, raw_routes)
        if route.name in seen_names:
            errors.append(
                f"{where}.name: {route.name!r} is also routes[{seen_names[route.name]}]'s name"
            )
        seen_names.setdefault(route.name, index)
        if route.name in RESERVED_ROUTE_NAMES:
            errors.append(f"{where}.name: {route.name!r} is the label of requests no route takes")
        upstream = config.upstreams.get(route.upstream)
        if upstream is None:
            known = ", ".join(sorted(config.upstreams))
            errors.append(
                f"{where}.upstream: no upstream named {route.upstream!r} (upstreams: {known})"
            )
        elif upstream.timeout_seconds > route.request_timeout_seconds:
            errors.append(
                f"{where}.request_timeout_seconds: {route.request_timeout_seconds:g} is shorter "
                f"than upstream {route.upstream!r}'s timeout_seconds "
                f"({upstream.timeout_seconds:g})"
            )
        elif route.min_attempt_seconds > upstream.timeout_seconds:
            errors.append(
                f"{where}.min_attempt_seconds: {route.min_attempt_seconds:g} exceeds upstream "
                f"{route.upstream!r}'s timeout_seconds ({upstream.timeout_seconds:g})"
            )
        key = "path_prefix" if route.is_prefix else "path"
        own = _gateway_path(route.match_path)
        if own:
            errors.append(
                f"{where}.{key}: {route.match_path!r} is the gateway's own {own} (a prefix above "
                "it, such as /, is fine: the gateway's endpoints are served first)"
            )
        by_method = claimed.setdefault((route.is_prefix, route.match_path), {})
        methods = list(route.methods)
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")  # served wherever GET is
        for method in methods:
            if method in by_method:
                other = by_method[method]
                errors.append(
                    f"{where}.{key}: {route.match_path!r} {method} is routes[{other}]'s already "
                    f"({_route_label(other, raw_routes)})"
                )
                break
            by_method[method] = index
    return errors


def _gateway_path(path: str) -> str | None:
    for own in GATEWAY_PATHS:
        if path == own or path.startswith(own + "/"):
            return own
    return None


def _route_label(index: int, raw_routes: list[Any]) -> str:
    name = None
    if index < len(raw_routes) and isinstance(raw_routes[index], Mapping):
        name = raw_routes[index].get("name")
    return f"routes[{index}] ({name})" if isinstance(name, str) and name else f"routes[{index}]"


def _location(loc: Iterable[int | str], data: Any) -> str:
    """``routes[1] (users).rate_limit.window_seconds`` for pydantic's location tuple."""
    parts: list[str] = []
    items = list(loc)
    raw_routes = data.get("routes") if isinstance(data, Mapping) else None
    for position, part in enumerate(items):
        if isinstance(part, int):
            if position == 1 and items[0] == "routes" and isinstance(raw_routes, list):
                parts[-1] = _route_label(part, raw_routes)
            else:
                parts[-1] += f"[{part}]"
        elif not parts:
            parts.append(str(part))
        else:
            parts.append(f".{part}")
    return "".join(parts) or "(top level)"


def describe_config_error(error: ValidationError, data: Any) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [part for part in item["loc"] if not _is_union_tag(part)]
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{_location(loc, data)}: {message}")
    return lines


def _is_union_tag(part: int | str) -> bool:
    return isinstance(part, str) and part.startswith(("literal[", "function-after["))


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last).

    Keys merged in with ``<<: *anchor`` may be overridden by the mapping's own keys, as YAML
    means them to be; only the keys written in the mapping itself must differ.
    """


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        mark = key_node.start_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        try:
            duplicate = key in seen
        except TypeError:
            raise ConfigError(
                f"{where}: a key must be a plain value, not a list or mapping"
            ) from None
        if duplicate:
            raise ConfigError(f"{where}: the key {key!r} is given twice")
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_config(text: str, settings: GatewaySettings, source: str) -> GatewayConfig:
    """The validated config of a file's text; ``ConfigError`` naming ``source`` otherwise."""
    prefix = f"invalid config {source}: "
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as error:
        raise ConfigError(prefix + str(error)) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{prefix}{where}{error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(prefix + " ".join(str(error).split())) from None
    except (ValueError, TypeError, RecursionError) as error:  # e.g. an int of 5,000 digits
        raise ConfigError(f"{prefix}{type(error).__name__}: {str(error)[:200]}") from None
    if not isinstance(data, dict):
        raise ConfigError(prefix + "the file must be a mapping with upstreams and routes")
    try:
        config = GatewayConfig.model_validate(data, context={"settings": settings})
    except ValidationError as error:
        raise ConfigError(prefix + "; ".join(describe_config_error(error, data))) from None
    raw_routes = data.get("routes")
    errors = _cross_check(config, raw_routes if isinstance(raw_routes, list) else [])
    if errors:
        raise ConfigError(prefix + "; ".join(errors))
    return config


def load_config(path: str | Path, settings: GatewaySettings) -> GatewayConfig:
    """Read and validate the file at ``path``; ``ConfigError`` with one line otherwise."""
    source = Path(path)
    try:
        with source.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"invalid config {path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"invalid config {path}: not UTF-8 ({error.reason})") from None
    return parse_config(text, settings, str(path))


DEFAULT_ROUTE_NAME = "default"
DEFAULT_UPSTREAM_NAME = "backend"
DEFAULT_ROUTE_PATH = "/api/v1/data"
DEFAULT_UPSTREAM_PATH = "/flaky-data"


def default_config(settings: GatewaySettings, methods: Iterable[str] = ("GET",)) -> GatewayConfig:
    """The table without a file: the seed's one route, every policy from the environment."""
    data = {
        "upstreams": {DEFAULT_UPSTREAM_NAME: {}},
        "routes": [
            {
                "name": DEFAULT_ROUTE_NAME,
                "path": DEFAULT_ROUTE_PATH,
                "methods": list(methods),
                "upstream": DEFAULT_UPSTREAM_NAME,
                "upstream_path": DEFAULT_UPSTREAM_PATH,
            }
        ],
    }
    return GatewayConfig.model_validate(data, context={"settings": settings})


def json_schema() -> dict[str, Any]:
    """The file's JSON Schema (``resilient-gateway schema``), for editors and CI."""
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "resilient-gateway config (GATEWAY_CONFIG)"
    return schema
