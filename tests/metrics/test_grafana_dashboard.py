"""deploy/grafana/ecoreport-dashboard.json queries only what /metrics serves, in PromQL that
Prometheus' own parser (promtool) accepts, through the data source Grafana asks for on import."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics.conftest import prometheus_binary

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ecoreport-dashboard.json"
METRIC_NAME = re.compile(r"\b(ecoreport_[a-z_]+)\b")
# Grafana's variables, as Grafana would substitute them, so promtool sees plain PromQL.
VARIABLES = {"$__range": "1d", "$job": "ecoreport", "$basis": "location", "$stale_after": "900"}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
        if panel["type"] != "row":
            found.append(panel)
    return found


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def _served_names(client: Any, token: str) -> set[str]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    names = set()
    for family in text_string_to_metric_families(response.content.decode()):
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_every_metric_the_dashboard_queries_is_one_metrics_serves(dashboard, client, cast):
    served = _served_names(client, cast.owner_token)
    queried = {name for expr in _expressions(dashboard) for name in METRIC_NAME.findall(expr)}
    assert queried, "the dashboard queries no ecoreport metric"
    assert queried <= served, f"not served by /metrics: {sorted(queried - served)}"
    # And the dashboard shows every family: nothing /metrics serves is left off it.
    assert served <= queried, f"not on the dashboard: {sorted(served - queried)}"


def test_every_panel_queries_the_imported_prometheus(dashboard):
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in _panels(dashboard):
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        for target in panel["targets"]:
            assert METRIC_NAME.search(target["expr"]), (panel["title"], target["expr"])
    titles = " / ".join(p["title"] for p in _panels(dashboard)).lower()
    for subject in (
        "fleet power",
        "energy by team",
        "emissions by team",
        "not reporting",
        "target",
    ):
        assert subject in titles


def test_panel_ids_are_unique(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_promtool_parses_every_query(dashboard, tmp_path):
    promtool = prometheus_binary("promtool")
    rules = []
    for i, expr in enumerate(_expressions(dashboard)):
        if expr.startswith("label_values("):
            continue  # Grafana's own query function, not PromQL
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"ecoreport:dashboard_query_{i}", "expr": expr})
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
