"""The API's JSON parser, refusing what would otherwise surface as a 500 further in.

Its own module because DRF's settings import it while ``rest_framework.views`` is still being
built (``DEFAULT_PARSER_CLASSES``): it must not import views, and ``ecoreport.core.api`` does.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers
from rest_framework.utils import json


def _hostile_string(data: Any, depth: int = 0) -> str | None:
    """Why a parsed JSON document cannot be stored, or None: text with NUL characters or lone
    surrogates ("\\ud800" is valid JSON but not UTF-8, so PostgreSQL and every encoder refuse it)."""
    if depth > 64:
        return "the document is nested too deeply"
    if isinstance(data, str):
        if "\x00" in data:
            return "text must not contain NUL characters"
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return "text must not contain lone surrogates (\\ud800-\\udfff)"
        return None
    if isinstance(data, dict):
        items: Any = [*data.keys(), *data.values()]
    elif isinstance(data, list):
        items = data
    else:
        return None
    for item in items:
        problem = _hostile_string(item, depth + 1)
        if problem:
            return problem
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what would otherwise surface as a 500 further in: documents
    nested past the interpreter's recursion limit, lone surrogates and NUL characters."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            parse_constant = json.strict_constant if self.strict else None
            data = json.loads(stream.read().decode(encoding), parse_constant=parse_constant)
        except RecursionError:
            raise exceptions.ParseError(
                "JSON parse error - the document is nested too deeply."
            ) from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        problem = _hostile_string(data)
        if problem:
            raise exceptions.ParseError(f"JSON parse error - {problem}.")
        return data
