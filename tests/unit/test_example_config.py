"""``gateway.example.yaml`` and ``docs/gateway-config.schema.json`` cannot rot.

The example is loaded as the gateway loads a file, must show every key a route or an upstream
can have (so a new key cannot be added without an example of it), and must pass
``resilient-gateway check``; the committed schema must be what ``resilient-gateway schema``
prints, and ``check-jsonschema`` (the README's CI command) must accept the example with it and
refuse a broken copy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway.cli import main
from gateway.config import (
    GatewayConfig,
    RouteConfig,
    UpstreamConfig,
    json_schema,
    load_config,
)
from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "gateway.example.yaml"
SCHEMA = ROOT / "docs" / "gateway-config.schema.json"


def _raw() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def _nested_model(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    annotation = model.model_fields[key].annotation
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _keys_used(model: type[BaseModel], entries: list[dict[str, Any]], where: str) -> set[str]:
    """Every ``where.key`` the entries set, nested parts (``circuit_breaker.mode``) included."""
    used = set()
    for entry in entries:
        for key, value in entry.items():
            used.add(f"{where}{key}")
            nested = _nested_model(model, key)
            if nested is not None:
                used |= _keys_used(nested, [value], f"{where}{key}.")
    return used


def _all_keys(model: type[BaseModel], where: str) -> set[str]:
    keys = set()
    for key in model.model_fields:
        keys.add(f"{where}{key}")
        nested = _nested_model(model, key)
        if nested is not None:
            keys |= _all_keys(nested, f"{where}{key}.")
    return keys


def test_the_example_loads_as_the_gateway_loads_it() -> None:
    config = load_config(EXAMPLE, GatewaySettings(_env_file=None))
    assert isinstance(config, GatewayConfig)
    assert 2 <= len(config.upstreams) <= 3
    assert 4 <= len(config.routes) <= 6


@pytest.mark.parametrize(
    ("model", "part"), [(UpstreamConfig, "upstreams"), (RouteConfig, "routes")]
)
def test_the_example_shows_every_key(model: type[BaseModel], part: str) -> None:
    raw = _raw()[part]
    entries = list(raw.values()) if isinstance(raw, dict) else raw
    missing = _all_keys(model, "") - _keys_used(model, entries, "")
    assert not missing, f"gateway.example.yaml shows no {part} entry with {sorted(missing)}"


def test_the_example_shows_both_breaker_modes_and_both_rate_limit_keys() -> None:
    raw = _raw()
    modes = {u.get("circuit_breaker", {}).get("mode") for u in raw["upstreams"].values()}
    assert {"consecutive", "failure_rate"} <= modes
    keys = {r.get("rate_limit", {}).get("key") for r in raw["routes"]}
    assert "ip" in keys
    assert any(isinstance(k, str) and k.startswith("header:") for k in keys)
    assert "" in {r.get("rewrite_prefix") for r in raw["routes"]}  # a stripped prefix


def test_the_example_passes_check_and_lists_every_route(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["check", str(EXAMPLE)])  # raises SystemExit(2) on an invalid file
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines()[1:] if line and not line[0].isspace()}
    names = {route["name"] for route in _raw()["routes"]}
    assert names <= listed
    for upstream in _raw()["upstreams"]:
        assert f"  {upstream}: " in out
    assert out.rstrip().endswith(f"ok, {len(names)} routes, {len(_raw()['upstreams'])} upstreams")


def test_check_refuses_what_no_schema_can_see(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "gateway.yaml"
    broken.write_text(EXAMPLE.read_text().replace("upstream: orders", "upstream: order", 1))
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(broken)])
    assert exit_.value.code == 2
    assert "no upstream named 'order'" in capsys.readouterr().err


def test_the_committed_schema_is_what_the_schema_command_prints() -> None:
    committed = json.loads(SCHEMA.read_text())
    assert committed == json_schema(), (
        "docs/gateway-config.schema.json is stale: "
        "resilient-gateway schema > docs/gateway-config.schema.json"
    )


def test_the_examples_modeline_names_the_committed_schema() -> None:
    first = EXAMPLE.read_text().splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    assert (EXAMPLE.parent / match.group(1)).resolve() == SCHEMA.resolve()


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    """The README's CI command, run as it is written (a dev tool: the Docker image's suite,
    which has the test tools only, skips it)."""
    pytest.importorskip("check_jsonschema")
    command = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_check_jsonschema_accepts_the_example() -> None:
    result = _check_jsonschema(EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("timeout_seconds: 5", "timeout: 5", "timeout"),  # an unknown key
        ("client: aiohttp", "client: curl", "curl"),  # not one of the choices
        ("pool_size: 50", "pool_size: fifty", "fifty"),  # not a number
    ],
)
def test_check_jsonschema_refuses_a_broken_copy(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    text = EXAMPLE.read_text()
    assert old in text
    broken = tmp_path / "gateway.yaml"
    broken.write_text(text.replace(old, new, 1))
    result = _check_jsonschema(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert complaint in result.stdout
