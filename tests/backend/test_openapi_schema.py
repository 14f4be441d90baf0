"""What /api/schema/ promises, checked against what the views do. The full property-based check
against a live server is tests/e2e/test_schemathesis.py; these are the fast, exact cases."""

from __future__ import annotations

import pytest

ERROR_REF = {"$ref": "#/components/schemas/Error"}
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
# The Carbon Aware SDK's routes keep that service's error shape (RFC 7807 problem details).
SDK_PREFIX = "/api/carbon-aware/"


@pytest.fixture(scope="module")
def schema():
    # Generated once for the module, as /api/schema/ serves it (test_rollup_and_usage checks
    # that it is served); generation takes seconds.
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def _json_schema(operation, status: str):
    return operation["responses"][status]["content"]["application/json"]["schema"]


def test_tokens_are_the_security_schemes_and_every_operation_uses_one(schema):
    schemes = dict(schema["components"]["securitySchemes"])
    # CodeCarbon trackers send their api_key in CodeCarbon's own header, not as a bearer token.
    codecarbon = schemes.pop("codecarbonToken")
    assert (codecarbon["type"], codecarbon["in"], codecarbon["name"]) == (
        "apiKey",
        "header",
        "x-api-token",
    )
    assert schemes.keys() == {"apiToken", "agentToken"}
    assert {s["type"] for s in schemes.values()} == {"http"}
    assert {s["scheme"] for s in schemes.values()} == {"bearer"}
    for path, method, operation in _operations(schema):
        if path in ("/api/v1/ingest", "/api/v1/agent/ping"):
            expected = "agentToken"
        elif path.startswith("/api/codecarbon/"):
            expected = "codecarbonToken"
        else:
            expected = "apiToken"
        assert operation["security"] == [{expected: []}], (method, path)


def _error_schema(path: str, operation, status: str):
    if path.startswith(SDK_PREFIX):
        content = operation["responses"][status]["content"]
        return content["application/problem+json"]["schema"], PROBLEM_REF
    return _json_schema(operation, status), ERROR_REF


def test_every_operation_documents_its_errors_in_the_one_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    problem = schema["components"]["schemas"]["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        for status in ("401", "403"):
            got, expected = _error_schema(path, operation, status)
            assert got == expected, (method, path, status)
        # Downloads answer the file, and /metrics its exposition, whatever Accept says; every
        # other operation can be a 406.
        answers_any = "download" in path or path == "/metrics"
        assert ("406" in responses) == (not answers_any), (method, path)
        if "{" in path:
            assert _json_schema(operation, "404") == ERROR_REF, (method, path)
        if "requestBody" in operation:
            assert {"400", "415"} <= responses.keys(), (method, path)
        for status in responses:
            if status >= "400":
                got, expected = _error_schema(path, operation, status)
                assert got == expected, (method, path, status)


@pytest.mark.parametrize(
    ("method", "path", "status", "component"),
    [
        ("get", "/api/v1/sites", "200", "SiteList"),
        ("get", "/api/v1/sites/{slug}/pue", "200", "PuePeriodList"),
        ("get", "/api/v1/sites/{slug}/instruments", "200", "InstrumentList"),
        ("get", "/api/v1/carbon-intensity", "200", "FactorList"),
        ("get", "/api/v1/reports", "200", "ReportList"),
        ("get", "/api/v1/usage", "200", "Usage"),
        ("post", "/api/v1/sites", "201", "SiteOut"),
        ("post", "/api/v1/sites/{slug}/pue", "201", "PuePeriodOut"),
        ("post", "/api/v1/sites/{slug}/instruments", "201", "InstrumentOut"),
        ("post", "/api/v1/carbon-intensity", "201", "FactorOut"),
        ("post", "/api/v1/targets", "201", "Target"),
        ("post", "/api/v1/reports", "202", "ReportOut"),
    ],
)
def test_answers_are_documented_with_the_status_and_shape_they_have(
    schema, method, path, status, component
):
    operation = schema["paths"][path][method]
    assert _json_schema(operation, status) == {"$ref": f"#/components/schemas/{component}"}


def test_list_envelopes_are_documented_as_objects(schema):
    components = schema["components"]["schemas"]
    assert set(components["FactorList"]["properties"]) == {"count", "results"}
    assert set(components["SiteList"]["properties"]) == {"results"}
    assert components["SiteList"]["properties"]["results"]["type"] == "array"


@pytest.mark.django_db
def test_documented_list_envelope_matches_the_answer(client, cast):
    from ecoreport.carbon.sites import site_create

    site_create(organization=cast.org, slug="dc1", name="DC 1", grid_zone="FR")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {cast.owner_token}"}
    sites = client.get("/api/v1/sites", **auth).json()
    assert list(sites) == ["results"] and sites["results"][0]["slug"] == "dc1"
    factors = client.get("/api/v1/carbon-intensity", {"limit": 1}, **auth).json()
    assert list(factors) == ["count", "results"] and len(factors["results"]) <= 1
