"""The OpenAPI schema says what the API does: the one error shape on every 4xx an operation can
answer, bearer authentication (agent tokens and API tokens) as security schemes.

``AutoSchema`` adds the error responses that DRF's machinery produces for every view of a kind
(authentication, permissions, content negotiation, parsing, throttling, unknown ids), so an
operation's own ``extend_schema`` only lists what is particular to it (a 409, a 413).
Schemathesis (tests/e2e/test_schemathesis.py) holds the schema and the behaviour together.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

from ecoreport.core.api import FileNegotiation
from ecoreport.core.problems import PROBLEM_MEDIA_TYPE, ProblemDetails


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable, e.g. invalid, not_found, throttled")
    message = serializers.CharField(help_text="a sentence a person can act on")
    details = serializers.JSONField(
        required=False, help_text="per-field problems, where the request had fields"
    )


class Error(serializers.Serializer):
    error = ErrorDetail()


ERROR_DESCRIPTIONS = {
    "400": "Invalid parameters or body; `details` names the fields.",
    "401": "No, invalid or revoked bearer token.",
    "403": "The token's role may not do this.",
    "404": "No such object in the caller's organization.",
    "406": "The Accept header asks for a type the API does not serve.",
    "409": "The object is not in a state that allows this.",
    "413": "The body is larger than the configured limit.",
    "415": "The body's Content-Type or Content-Encoding is not supported.",
    "429": "Throttled; Retry-After says when to come back.",
}


class AutoSchema(SpectacularAutoSchema):
    def _error_codes(self, operation: dict[str, Any]) -> list[str]:
        params = operation.get("parameters", [])
        codes = ["401", "403"]
        if not issubclass(self.view.content_negotiation_class, FileNegotiation):
            codes.append("406")
        if "requestBody" in operation or any(p["in"] == "query" for p in params):
            codes.append("400")
        if any(p["in"] == "path" for p in params):
            codes.append("404")
        if "requestBody" in operation:
            codes.append("415")
        if self.view.get_throttles():
            codes.append("429")
        return codes

    def error_response(self, code: str) -> dict[str, Any]:
        return self._get_response_for_code(Error, code)

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._error_codes(operation):
            if code not in responses:
                responses[code] = self.error_response(code)
        for code, response in responses.items():
            if code >= "400" and "content" not in response:
                response["content"] = self.error_response(code)["content"]
            if code in ERROR_DESCRIPTIONS and not response.get("description"):
                response["description"] = ERROR_DESCRIPTIONS[code]
            if code == "429":
                response.setdefault("headers", {})["Retry-After"] = {
                    "schema": {"type": "integer"},
                    "description": "seconds to wait",
                }
        operation["responses"] = dict(sorted(responses.items()))
        return operation


class ProblemSchema(AutoSchema):
    """For views answering errors as RFC 7807 problem details (``ecoreport.core.problems``)."""

    def error_response(self, code: str) -> dict[str, Any]:
        response = self._get_response_for_code(
            ProblemDetails, code, media_types=[PROBLEM_MEDIA_TYPE]
        )
        if code == "400":
            response["description"] = "Invalid parameters; `errors` names them."
        return response


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "ecoreport.organizations.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A user's API token (`eru_…`, from `manage.py issue_api_token`); "
            "it acts with that member's role in their organization.",
        }


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "ecoreport.fleet.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent token (`era_…`, from `manage.py issue_agent_token`), "
            "bound to one host; for ingest and ping only.",
        }


class CodeCarbonTokenScheme(OpenApiAuthenticationExtension):
    target_class = "ecoreport.codecarbon.authentication.CodeCarbonTokenAuthentication"
    name = "codecarbonToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-token",
            "description": "A CodeCarbon token (`ecc_…`, from `manage.py "
            "issue_codecarbon_token`), bound to one team, project and site; what a CodeCarbon "
            "tracker sends as its api_key.",
        }
