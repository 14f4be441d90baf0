"""A database error under a request: the API answers JSON 503 + Retry-After in its error shape,
pages a short HTML 503; never Django's HTML 500. In-process, on both databases: the connection
fails the way a dropped one does (OperationalError from the driver's cursor)."""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError
from django.db.backends.utils import CursorWrapper


@pytest.fixture
def database_down(cast):
    # Its own patcher, undone before the database fixtures tear down (they need the cursor).
    patcher = pytest.MonkeyPatch()

    def fail(error):
        def execute(self, *args, **kwargs):
            raise error("server closed the connection unexpectedly")

        patcher.setattr(CursorWrapper, "execute", execute)
        patcher.setattr(CursorWrapper, "executemany", execute)

    yield fail
    patcher.undo()


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
@pytest.mark.parametrize(
    "method, path",
    [("get", "/api/v1/usage"), ("post", "/api/v1/ingest"), ("get", "/api/v1/agent/ping")],
)
def test_api_answers_json_503_with_retry_after(client, cast, database_down, error, method, path):
    database_down(error)
    response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "error": {
            "code": "unavailable",
            "message": "The database is unavailable; nothing was stored. Retry the same request"
            " in 5 s.",
        }
    }


def test_page_answers_html_503(client, cast, database_down):
    client.force_login(cast.owner.user)
    database_down(OperationalError)
    response = client.get("/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "5"
    assert b"Temporarily unavailable" in response.content


def test_other_errors_are_not_turned_into_503(client, cast, database_down):
    from django.db import IntegrityError

    database_down(IntegrityError)
    client.raise_request_exception = False
    response = client.get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}")
    assert response.status_code == 500
