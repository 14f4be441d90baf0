"""From a team's biggest-jobs table to the job's page and on to a GPU's, in the browser: the
charts are drawn and the figures are the job's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import make_batch, make_sample

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_biggest_jobs_link_to_the_job_page_and_its_gpus(
    signed_in, live_server, agent, post_batch
):
    page = signed_in
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    owner = {"team": "nlp", "project": "llm", "job_id": "train-7", "user": "ann"}
    samples = [
        make_sample(
            gpu=gpu,
            start=start + timedelta(hours=i),
            seconds=3600,
            energy_j=3600 * 300.0,
            attribution=[{"share": 1.0, **owner}],
        )
        for i in range(3)
        for gpu in ("GPU-7", "GPU-8")
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 6
    page.goto(f"{live_server.url}/teams/nlp/?period=7d")
    page.click("a[href='/jobs/train-7/']")
    page.wait_for_url("**/jobs/train-7/")
    page.wait_for_selector("[data-figure='job-energy'][data-drawn='true']", timeout=15_000)
    page.wait_for_selector("[data-figure='job-gpus'][data-drawn='true']", timeout=15_000)
    assert page.locator("h1").inner_text() == "Job: train-7"
    assert "1.80" in page.locator(".cards").first.inner_text()  # 3 h x 2 GPUs x 300 W
    assert page.locator("#gpus-title ~ table tbody tr").count() == 2
    page.click("a[href='/gpus/GPU-8/']")
    page.wait_for_selector("[data-figure='device-energy'][data-drawn='true']", timeout=15_000)
    assert "GPU" in page.locator("h1").inner_text()
    assert page.js_errors == []
