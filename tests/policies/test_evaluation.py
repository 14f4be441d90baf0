"""Evaluating targets against the rollups, with time frozen: every status, forecasts with
their stored numbers, relative targets against a baseline, scopes and period rollover."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.core.management import call_command

from ecoreport.policies.models import Target, TargetEvaluation
from ecoreport.policies.services import target_create, target_evaluate
from tests.factories import ProjectFactory, TeamFactory
from tests.policies.conftest import has_emissions

pytestmark = pytest.mark.django_db

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
NOV_11 = datetime(2026, 11, 11, tzinfo=UTC)  # 10 of November's 30 days have passed


def make_target(cast, **fields) -> Target:
    defaults = {
        "name": "GPU energy",
        "metric": "energy_kwh",
        "comparator": "at_most",
        "threshold": 1000.0,
        "period": "month",
    }
    return target_create(organization=cast.org, **{**defaults, **fields})


def evaluate_at(target: Target, moment: datetime) -> TargetEvaluation:
    with time_machine.travel(moment, tick=False):
        return target_evaluate(target=target)[-1]


@pytest.mark.parametrize(
    ("threshold", "status"),
    [
        (1000.0, "on_track"),  # 120 kWh so far, 360 forecast
        (300.0, "at_risk"),  # the forecast crosses 300
        (100.0, "breached"),  # 120 is already past 100
    ],
)
def test_each_status_of_a_cumulative_target(cast, usage, threshold, status):
    usage(NOV_1, 240, kwh_per_hour=0.5)
    target = make_target(cast, threshold=threshold)
    evaluation = evaluate_at(target, NOV_11)
    assert evaluation.status == status
    assert evaluation.value == pytest.approx(120.0)
    assert evaluation.forecast_value == pytest.approx(360.0)
    assert evaluation.forecast_rate_per_day == pytest.approx(12.0)
    assert evaluation.threshold_value == threshold
    assert (evaluation.period_start, evaluation.period_end) == (
        NOV_1,
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert not evaluation.final
    target.refresh_from_db()
    assert target.status == status
    assert target.last_evaluated_at == NOV_11


def test_no_usage_is_no_data_not_zero(cast, usage):
    usage(NOV_1, 24, org=cast.other_org)  # someone else's energy does not count
    evaluation = evaluate_at(make_target(cast), NOV_11)
    assert evaluation.status == "no_data"
    assert evaluation.value is None
    assert evaluation.note == "no usage in this window"


def test_period_that_ended_on_the_wrong_side_is_breached(cast, usage):
    usage(NOV_1, 720, util_pct=55.0)
    target = make_target(
        cast,
        name="Utilization",
        metric="avg_gpu_util_pct",
        comparator="at_least",
        threshold=60.0,
        period_label="2026-11",
    )
    assert evaluate_at(target, NOV_11).status == "at_risk"  # an average can still recover
    final = evaluate_at(target, datetime(2026, 12, 3, tzinfo=UTC))
    assert final.final
    assert final.status == "breached"
    assert final.value == pytest.approx(55.0)


def test_rollover_closes_the_ended_period_before_the_new_one(cast, usage):
    usage(NOV_1, 720, kwh_per_hour=0.5)  # 360 kWh in November
    target = make_target(cast, threshold=350.0)
    assert evaluate_at(target, NOV_11).status == "at_risk"
    with time_machine.travel(datetime(2026, 12, 1, 1, tzinfo=UTC), tick=False):
        closed, current = target_evaluate(target=target)
    assert (closed.period_start, closed.final, closed.status) == (NOV_1, True, "breached")
    assert closed.value == pytest.approx(360.0)
    assert (current.period_start, current.status) == (datetime(2026, 12, 1, tzinfo=UTC), "no_data")
    # The closed period is not closed a second time.
    assert (
        len(
            evaluate_at(target, datetime(2026, 12, 1, 2, tzinfo=UTC)).target.evaluations.filter(
                final=True
            )
        )
        == 1
    )


def test_trailing_14_day_forecast_uses_the_recent_rate(cast, usage):
    usage(datetime(2026, 10, 28, tzinfo=UTC), 96, kwh_per_hour=2.0)  # a busy end of October
    usage(NOV_1, 240, kwh_per_hour=0.5)
    run_rate = evaluate_at(make_target(cast, threshold=500.0), NOV_11)
    trailing = evaluate_at(
        make_target(cast, threshold=500.0, forecast_method="trailing_14d"), NOV_11
    )
    assert run_rate.forecast_value == pytest.approx(360.0)
    assert run_rate.status == "on_track"
    # 312 kWh in the trailing 14 days: 22.29 kWh/day for the 20 days left, on top of 120.
    assert trailing.trailing_value == pytest.approx(312.0)
    assert trailing.forecast_rate_per_day == pytest.approx(312.0 / 14)
    assert trailing.forecast_value == pytest.approx(120.0 + 312.0 / 14 * 20)
    assert trailing.forecast_method == "trailing_14d"
    assert trailing.status == "at_risk"


@pytest.mark.parametrize(
    ("metric", "comparator", "threshold", "value", "status"),
    [
        ("idle_energy_share_pct", "at_most", 15.0, 10.0, "on_track"),
        ("idle_energy_share_pct", "at_most", 5.0, 10.0, "at_risk"),
        ("energy_per_gpu_hour_wh", "at_most", 450.0, 500.0, "at_risk"),
        ("avg_gpu_util_pct", "at_least", 70.0, 80.0, "on_track"),
    ],
)
def test_ratio_metrics(cast, usage, metric, comparator, threshold, value, status):
    usage(NOV_1, 240, kwh_per_hour=0.5, util_pct=80.0, idle_share=0.1)
    evaluation = evaluate_at(
        make_target(cast, metric=metric, comparator=comparator, threshold=threshold), NOV_11
    )
    assert evaluation.value == pytest.approx(value)
    assert evaluation.forecast_value == pytest.approx(value)  # a ratio is forecast as itself
    assert evaluation.forecast_rate_per_day is None
    assert evaluation.status == status


@pytest.mark.parametrize(("kwh_per_hour", "status"), [(0.5, "on_track"), (1.0, "at_risk")])
def test_reduction_against_the_same_quarter_last_year(cast, usage, kwh_per_hour, status):
    usage(datetime(2025, 10, 1, tzinfo=UTC), 92 * 24, kwh_per_hour=1.0)  # Q4 2025: 2,208 kWh
    usage(datetime(2026, 10, 1, tzinfo=UTC), 41 * 24, kwh_per_hour=kwh_per_hour)
    target = make_target(
        cast, threshold=None, reduction_pct=20.0, baseline="same_period_last_year", period="quarter"
    )
    evaluation = evaluate_at(target, NOV_11)
    assert evaluation.baseline_value == pytest.approx(2208.0)
    assert evaluation.threshold_value == pytest.approx(2208.0 * 0.8)
    # Run rate over 41 of the quarter's 92 days.
    assert evaluation.forecast_value == pytest.approx(kwh_per_hour * 41 * 24 * 92 / 41)
    assert evaluation.status == status


def test_reduction_per_gpu_hour_against_a_fixed_baseline(cast, usage):
    usage(datetime(2025, 4, 1, tzinfo=UTC), 91 * 24, kwh_per_hour=1.0)  # 2025-Q2: 1 kWh/GPU-h
    usage(datetime(2026, 10, 1, tzinfo=UTC), 41 * 24, kwh_per_hour=0.7)
    target = make_target(
        cast,
        threshold=None,
        reduction_pct=20.0,
        baseline="2025-Q2",
        period="quarter",
        normalize_per_gpu_hour=True,
    )
    evaluation = evaluate_at(target, NOV_11)
    assert evaluation.baseline_value == pytest.approx(1.0)
    assert evaluation.threshold_value == pytest.approx(0.8)
    assert evaluation.value == pytest.approx(0.7)  # kWh per GPU-hour, as a ratio
    assert evaluation.forecast_value == pytest.approx(0.7)
    assert evaluation.status == "on_track"


def test_baseline_without_data_is_no_data(cast, usage):
    usage(NOV_1, 240)
    target = make_target(cast, threshold=None, reduction_pct=10.0, baseline="previous_period")
    evaluation = evaluate_at(target, NOV_11)
    assert evaluation.status == "no_data"
    assert evaluation.value == pytest.approx(120.0)
    assert evaluation.note == "baseline 2026-10: no usage in this window"


def test_team_and_project_scopes_count_only_their_rows(cast, usage, team):
    project = ProjectFactory(organization=cast.org, slug="llm", team=team)
    usage(NOV_1, 240, kwh_per_hour=0.5, team=team, project=project)
    usage(NOV_1, 240, kwh_per_hour=2.0)  # unattributed: the org's only
    for fields, expected in [
        ({"scope_kind": "org"}, 600.0),
        ({"scope_kind": "team", "team": team}, 120.0),
        ({"scope_kind": "project", "project": project}, 120.0),
    ]:
        assert evaluate_at(make_target(cast, **fields), NOV_11).value == pytest.approx(expected)


def test_evaluate_targets_command(cast, usage, capsys):
    usage(NOV_1, 240, kwh_per_hour=0.5)
    make_target(cast, name="Energy cap", threshold=300.0)
    make_target(cast, name="Paused", threshold=300.0, is_active=False)
    target_create(
        organization=cast.other_org,
        name="Theirs",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1.0,
        period="month",
    )
    with time_machine.travel(NOV_11, tick=False):
        call_command("evaluate_targets", "--org", "acme")
    out = capsys.readouterr().out
    assert "acme/Energy cap [org energy_kwh 2026-11]: at_risk" in out
    assert "Evaluated 1 targets: 1 at_risk." in out
    assert not TargetEvaluation.objects.filter(target__organization=cast.other_org).exists()
    with time_machine.travel(NOV_11, tick=False):
        call_command("evaluate_targets")
    assert "Evaluated 2 targets: 1 at_risk, 1 no_data." in capsys.readouterr().out


def test_evaluate_targets_command_refuses_an_unknown_org(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no organization 'nope'"):
        call_command("evaluate_targets", "--org", "nope")


def test_demo_targets_are_created_and_evaluated(cast, usage):
    nlp = TeamFactory(organization=cast.org, slug="nlp")
    TeamFactory(organization=cast.org, slug="vision")
    ProjectFactory(organization=cast.org, slug="shared-inference")
    usage(datetime(2026, 10, 1, tzinfo=UTC), 41 * 24, team=nlp, util_pct=70.0)
    from ecoreport.demo.policies import DEMO_TARGETS, targets_demo_create

    targets = targets_demo_create(organization=cast.org, now=NOV_11)
    assert len(targets) == len(DEMO_TARGETS)
    statuses = {t.name: t.status for t in targets}
    assert statuses["NLP GPU utilization at least 60%"] == "on_track"
    assert statuses["Idle energy share at most 15%"] == "on_track"
    assert TargetEvaluation.objects.filter(target__in=targets).count() == len(targets)


needs_emissions = pytest.mark.skipif(
    not has_emissions(), reason="the rollup has no emission columns yet (carbon accounting)"
)


@needs_emissions
@pytest.mark.parametrize(
    ("metric", "threshold", "value", "forecast", "status"),
    [
        # 240 h x 0.5 kWh x PUE 1.2 = 144 kWh facility energy, 432 forecast.
        ("facility_energy_kwh", 400.0, 144.0, 432.0, "at_risk"),
        # 144 kWh x 300 g/kWh = 43.2 kg so far, 129.6 forecast.
        ("co2e_kg", 200.0, 43.2, 129.6, "on_track"),
        ("co2e_kg", 40.0, 43.2, 129.6, "breached"),
        # Market-based at 50 g/kWh: 7.2 kg, 21.6 forecast.
        ("co2e_market_kg", 20.0, 7.2, 21.6, "at_risk"),
        ("avg_intensity_g_per_kwh", 250.0, 300.0, 300.0, "at_risk"),
    ],
)
def test_emission_metrics(cast, usage, metric, threshold, value, forecast, status):
    usage(NOV_1, 240, kwh_per_hour=0.5, pue=1.2, g_per_kwh=300.0, market_g_per_kwh=50.0)
    evaluation = evaluate_at(make_target(cast, metric=metric, threshold=threshold), NOV_11)
    assert evaluation.value == pytest.approx(value)
    assert evaluation.forecast_value == pytest.approx(forecast)
    assert evaluation.status == status


@needs_emissions
def test_emissions_per_gpu_hour_against_last_year(cast, usage):
    # Last year's Q4: 1 GPU at 1 kWh/h and 400 g/kWh = 0.4 kg per GPU-hour.
    usage(datetime(2025, 10, 1, tzinfo=UTC), 92 * 24, kwh_per_hour=1.0, g_per_kwh=400.0)
    # This year twice the GPUs' work would double the total; per GPU-hour it fell to 0.3 kg.
    usage(datetime(2026, 10, 1, tzinfo=UTC), 41 * 24, kwh_per_hour=1.0, g_per_kwh=300.0)
    target = make_target(
        cast,
        metric="co2e_kg",
        threshold=None,
        reduction_pct=20.0,
        baseline="same_period_last_year",
        period="quarter",
        normalize_per_gpu_hour=True,
    )
    evaluation = evaluate_at(target, NOV_11)
    assert evaluation.baseline_value == pytest.approx(0.4)
    assert evaluation.threshold_value == pytest.approx(0.32)
    assert evaluation.value == pytest.approx(0.3)
    assert evaluation.status == "on_track"
