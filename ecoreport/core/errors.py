"""The base of the domain errors: a refusal a person can act on, raised by services, selectors
and parsers, that the API answers without each view translating it.

A ``DomainError`` says what went wrong (its message), which input is at fault (``field``,
where one is), a machine-readable ``code`` and the HTTP status the API answers it with. The
API's exception handler (``ecoreport.core.api.exception_handler``) maps every one of them to
the one error shape, in one place; pages and management commands catch them as before (they
are ``ValueError``s). Nothing here imports Django or DRF: services raise these without
knowing about HTTP beyond a status number.
"""

from __future__ import annotations

from typing import Any


class DomainError(ValueError):
    code: str = "invalid"
    status_code: int = 400
    #: The input at fault, when one is; the API names it in ``details``.
    field: str | None = None
    #: Put before the message in the API's answer ("The batch is malformed: ").
    message_prefix: str = ""

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field

    def api_message(self) -> str:
        return f"{self.message_prefix}{self}"

    def api_details(self, default_field: str | None = None) -> Any:
        """Per-field messages for the error's ``details``, or None. ``default_field`` is the
        input a view's body is about, for errors that name none (a PUE view: ``pue``)."""
        field = self.field or default_field
        return {field: [str(self)]} if field else None
