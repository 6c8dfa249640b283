"""The shipped Prometheus and Grafana files agree with what the gateway exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import gateway_in_process

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/gateway.json"


async def exposed_sample_names() -> set[str]:
    async with gateway_in_process() as gw:
        await gw.client.get("/api/v1/data")
        text = (await gw.client.get("/metrics", headers={"Accept": "text/plain"})).text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        names.update(sample.name for sample in family.samples)
    return names


async def test_every_metric_the_dashboard_queries_is_exposed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs.extend(variable["query"] for variable in dashboard["templating"]["list"])
    queried = {name for expr in exprs for name in re.findall(r"\bgateway_[a-z_]+", expr)}
    assert len(queried) >= 7
    assert queried <= await exposed_sample_names()


def test_dashboard_covers_what_operators_look_at() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("status", "p99", "breaker state", "retries", "rate-limit blocks"):
        assert topic in titles


def test_dashboard_filters_by_upstream_and_route_and_the_route_list_follows_the_upstream() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["upstream"]["query"] == (
        "label_values(gateway_circuit_breaker_state, upstream)"
    )
    assert '{upstream=~"$upstream"}' in variables["route"]["query"]
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names.index("upstream") < names.index("route")  # Grafana resolves them in order
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for selector in re.findall(r"gateway_[a-z_]+\{([^}]*)\}", target["expr"]):
                assert 'route=~"$route"' in selector, (panel["title"], target["expr"])
                assert 'upstream=~"$upstream"' in selector, (panel["title"], target["expr"])


def test_breaker_families_are_taken_per_upstream_never_summed_over_routes() -> None:
    """Each route's breaker series repeats its upstream's one breaker: a sum would count an
    upstream once per route (two routes, one OPEN breaker: "2 open")."""
    dashboard = json.loads(DASHBOARD.read_text())
    breaker = re.compile(r"gateway_circuit_breaker_(state|transitions_total|open_seconds)\b")
    seen = 0
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            if not breaker.search(expr):
                continue
            seen += 1
            assert "sum" not in expr, expr
            for use in re.finditer(breaker, expr):
                inner = r"max by \(upstream(, [a-z_, ]+)?\) \(((increase|rate)\()?$"
                assert re.search(inner, expr[: use.start()]), expr
            assert "{{upstream}" in target["legendFormat"], target["legendFormat"]
    assert seen >= 2


def test_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    assert provisioned["datasources"][0]["url"] == "http://prometheus:9090"


def test_prometheus_scrapes_the_gateway_service() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["gateway:8000"]


def test_observability_services_are_an_optional_profile_with_existing_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("prometheus", "grafana"):
        service = compose["services"][name]
        assert service["profiles"] == ["observability"]
        for volume in service["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    assert "profiles" not in compose["services"]["gateway"]
