"""Report fixtures: a quarter of measurements ingested through the real API (so rollups and
emissions are the production ones), and a clock set after that quarter ended."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from tests.conftest import make_batch, make_sample

UTC = UTC
Q3_START = datetime(2026, 7, 1, tzinfo=UTC)
Q3_END = datetime(2026, 10, 1, tzinfo=UTC)
AFTER_Q3 = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)


def q3_batch(*, day: int = 3, minutes: int = 30, energy_j: float = 30_000.0, gpus: int = 2) -> dict:
    """One-minute samples on ``gpus`` GPUs, split between two teams and an idle stretch."""
    samples = []
    start = datetime(2026, 8, day, 10, 0, tzinfo=UTC)
    for g in range(gpus):
        for i in range(minutes):
            if i % 3 == 2:
                attribution: list[dict[str, Any]] = []  # idle
            elif g == 0:
                attribution = [{"share": 1.0, "team": "nlp", "project": "llm-pretrain"}]
            else:
                attribution = [
                    {"share": 0.7, "team": "vision", "project": "detr"},
                    {"share": 0.3, "team": "nlp", "project": "llm-eval"},
                ]
            samples.append(
                make_sample(
                    gpu=f"GPU-{g}",
                    start=start + timedelta(minutes=i),
                    seconds=60,
                    energy_j=energy_j + 100 * i + 7 * g,
                    attribution=attribution,
                )
            )
    return make_batch(samples)


@pytest.fixture
def after_q3() -> Any:
    with time_machine.travel(AFTER_Q3, tick=False) as traveller:
        yield traveller


@pytest.fixture
def q3_data(cast: Any, agent: Any, post_batch: Callable[..., Any]) -> Any:
    response = post_batch(agent.token, q3_batch())
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 60
    return agent


@pytest.fixture
def get_report_api(client: Any) -> Callable[..., Any]:
    def get(token: str, path: str = "", **params: Any) -> Any:
        return client.get(f"/api/v1/reports{path}", params, HTTP_AUTHORIZATION=f"Bearer {token}")

    return get
