"""Pure pieces of the pages: the period picker and the figure builders."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecoreport.core import figures
from ecoreport.dashboards.periods import PeriodError, parse_period

NOW = datetime(2026, 11, 28, 12, 34, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "start", "end", "prev_start"),
    [
        (
            {},
            datetime(2026, 10, 29, 13, tzinfo=UTC),
            datetime(2026, 11, 28, 13, tzinfo=UTC),
            datetime(2026, 9, 29, 13, tzinfo=UTC),
        ),
        (
            {"period": "7d"},
            datetime(2026, 11, 21, 13, tzinfo=UTC),
            datetime(2026, 11, 28, 13, tzinfo=UTC),
            datetime(2026, 11, 14, 13, tzinfo=UTC),
        ),
        (
            {"period": "month"},
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 11, 28, 13, tzinfo=UTC),
            datetime(2026, 10, 1, tzinfo=UTC),
        ),
        (
            {"period": "last-month"},
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 9, 1, tzinfo=UTC),
        ),
        (
            {"period": "quarter"},
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 11, 28, 13, tzinfo=UTC),
            datetime(2026, 7, 1, tzinfo=UTC),
        ),
        (
            {"period": "last-quarter"},
            datetime(2026, 7, 1, tzinfo=UTC),
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
        ),
        (
            {"period": "custom", "start": "2024-02-28", "end": "2024-02-29"},
            datetime(2024, 2, 28, tzinfo=UTC),
            datetime(2024, 3, 1, tzinfo=UTC),
            datetime(2024, 2, 26, tzinfo=UTC),
        ),
    ],
)
def test_periods(params, start, end, prev_start):
    period = parse_period(params, now=NOW)
    assert (period.start, period.end) == (start, end)
    assert period.previous.start == prev_start
    assert period.previous.end == period.start


def test_january_previous_quarter_crosses_the_year():
    period = parse_period({"period": "quarter"}, now=datetime(2027, 1, 5, tzinfo=UTC))
    assert period.previous.start == datetime(2026, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period": "fortnight"}, "Unknown period"),
        ({"period": "custom", "start": "2026-13-01", "end": "2026-12-01"}, "YYYY-MM-DD"),
        ({"period": "custom", "start": "2026-05-02", "end": "2026-05-01"}, "before the start"),
        ({"period": "custom", "start": "2020-01-01", "end": "2026-01-01"}, "at most"),
    ],
)
def test_bad_periods_are_explained(params, message):
    with pytest.raises(PeriodError, match=message):
        parse_period(params, now=NOW)


def test_custom_period_round_trips_through_the_picker():
    # The picker shows the inclusive last day; submitting it again gives the same window.
    period = parse_period({"period": "custom", "start": "2026-03-01", "end": "2026-03-31"}, now=NOW)
    assert period.last_day.isoformat() == "2026-03-31"
    again = parse_period(
        {"period": "custom", "start": "2026-03-01", "end": period.last_day.isoformat()}, now=NOW
    )
    assert again == period


def test_grouping_overrides_the_automatic_buckets():
    assert parse_period({"period": "90d"}, now=NOW).granularity == "day"
    assert parse_period({"period": "90d", "group": "month"}, now=NOW).granularity == "month"
    assert parse_period({"period": "7d", "group": "hour"}, now=NOW).granularity == "hour"
    assert parse_period({"period": "7d", "group": ""}, now=NOW).group == "auto"
    with pytest.raises(PeriodError, match="up to 31 days"):
        parse_period({"period": "90d", "group": "hour"}, now=NOW)
    with pytest.raises(PeriodError, match="Unknown grouping 'week'"):
        parse_period({"period": "30d", "group": "week"}, now=NOW)


def test_granularity_follows_the_length():
    assert (
        parse_period(
            {"period": "custom", "start": "2026-11-01", "end": "2026-11-02"}, now=NOW
        ).granularity
        == "hour"
    )
    assert parse_period({"period": "30d"}, now=NOW).granularity == "day"
    assert (
        parse_period(
            {"period": "custom", "start": "2026-01-01", "end": "2026-11-01"}, now=NOW
        ).granularity
        == "month"
    )


def test_stacked_figure_has_one_trace_per_group_biggest_first():
    d1, d2 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    rows = [
        {"period_start": d1, "team": "nlp", "energy_kwh": 1.0},
        {"period_start": d2, "team": "nlp", "energy_kwh": 2.0},
        {"period_start": d2, "team": "vision", "energy_kwh": 5.0},
        {"period_start": d1, "team": None, "energy_kwh": 0.5},
    ]
    fig = figures.stacked_over_time(rows, by="team", metric="energy_kwh", title="E", unit="kWh")
    assert [t["name"] for t in fig["data"]] == ["vision", "nlp", "(unattributed)"]
    assert list(fig["data"][1]["y"]) == [1.0, 2.0]
    assert list(fig["data"][0]["y"]) == [0.0, 5.0]  # missing periods are zero, not skipped
    assert fig["layout"]["barmode"] == "stack"
    assert fig["layout"]["yaxis"]["title"]["text"] == "kWh"
    assert fig["data"][0]["marker"]["color"] == figures.PALETTE[0]


def test_heatmap_grid_leaves_missing_cells_empty():
    d1, d2 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    fig = figures.utilization_heatmap(
        ["a", "b"], iter([(d1, "a", 50.0), (d2, "b", 70.0)]), title="U"
    )
    assert [list(r) for r in fig["data"][0]["z"]] == [[50.0, None], [None, 70.0]]
    assert list(fig["data"][0]["x"]) == ["2026-11-01", "2026-11-02"]


def test_plain_figures_are_what_plotly_would_build():
    # The stacked and line builders write plotly JSON by hand for speed: plotly must accept
    # every property (go.Figure validates and raises on anything unknown), and the layout must
    # match what the validated builders produce.
    import plotly.graph_objects as go

    d1 = datetime(2026, 11, 1, tzinfo=UTC)
    stacked = figures.stacked_over_time(
        [{"period_start": d1, "team": "nlp", "energy_kwh": 1.0}],
        by="team",
        metric="energy_kwh",
        title="E",
        unit="kWh",
    )
    lines = figures.lines_over_time([("a", [d1], [1.0]), ("b", [d1], [None])], title="L", unit="%")
    checked = figures.ranked_bars(
        [{"team": "nlp", "energy_kwh": 1.0}], by="team", metric="energy_kwh", title="R", unit="kWh"
    )
    for fig in (stacked, lines):
        validated = go.Figure(fig).to_plotly_json()
        assert validated["data"][0]["type"] == fig["data"][0]["type"]
        assert validated["layout"]["yaxis"]["rangemode"] == "tozero"
        for key in ("margin", "font", "legend", "colorway", "plot_bgcolor"):
            assert fig["layout"][key] == checked["layout"][key]
    assert lines["data"][1]["line"]["dash"] == "dash"


def test_a_line_of_one_point_is_a_marker_and_the_time_axis_can_be_fixed():
    import plotly.graph_objects as go

    d1, d2, d3 = (datetime(2026, m, 1, tzinfo=UTC) for m in (9, 10, 11))
    fig = figures.lines_over_time(
        [("one", [d1], [1.0]), ("two", [d1, d2], [1.0, 2.0]), ("marked", [d1, d2], [1.0, None])],
        title="L",
        unit="%",
        markers=("two",),
        x_range=(d1, d3),
    )
    assert [t["mode"] for t in fig["data"]] == ["lines+markers", "lines+markers", "lines+markers"]
    plain = figures.lines_over_time([("two", [d1, d2], [1.0, 2.0])], title="L", unit="%")
    assert plain["data"][0]["mode"] == "lines"
    assert fig["layout"]["xaxis"]["range"] == [d1.isoformat(), d3.isoformat()]
    assert "xaxis" not in plain["layout"]  # the shared layout is not changed
    go.Figure(fig)  # plotly accepts every property


def test_numbers_keep_their_precision_and_never_show_minus_zero():
    from ecoreport.dashboards.templatetags.eco import num

    assert num(1234.5) == "1,234"  # hundreds and up: whole numbers, thousands separated
    assert num(12.345) == "12.3"
    assert num(1.2345) == "1.23"
    assert num(-0.001) == "0.00"
    assert num(-0.001, 1) == "0.0"
    assert num(-0.5) == "-0.50"
    assert num(-1500.0) == "-1,500"
    assert num(None) == "—"


def test_stacked_charts_of_a_page_keep_each_groups_colour():
    d1 = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {"period_start": d1, "team": "nlp", "energy_kwh": 5.0, "co2e_kg": 1.0},
        {"period_start": d1, "team": "vision", "energy_kwh": 1.0, "co2e_kg": 3.0},
        {"period_start": d1, "team": None, "energy_kwh": 0.5, "co2e_kg": 0.1},
    ]
    order = ["nlp", "vision", None]
    energy, co2e = (
        figures.stacked_over_time(rows, by="team", metric=m, title="T", unit="u", order=order)
        for m in ("energy_kwh", "co2e_kg")
    )
    colours = [{t["name"]: t["marker"]["color"] for t in f["data"]} for f in (energy, co2e)]
    assert colours[0] == colours[1]
    assert [t["name"] for t in co2e["data"]] == ["nlp", "vision", "(unattributed)"]
    # Without an order the biggest of this metric comes first (and takes the first colour).
    alone = figures.stacked_over_time(rows, by="team", metric="co2e_kg", title="T", unit="u")
    assert alone["data"][0]["name"] == "vision"


def test_charts_name_groups_by_their_name_and_keep_them_apart_by_slug():
    # Two teams may share a name; the chart keys traces by slug and shows the names. Names are
    # any text: plotly reads legends and hover text as a little HTML and "%{...}" as a field,
    # so both are escaped (plotly turns the entities back into the characters).
    d1 = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {"period_start": d1, "team": "efde87f5ca", "team_name": "研究チーム", "energy_kwh": 5.0},
        {"period_start": d1, "team": "x-1", "team_name": "<b>R&D</b> %{y}", "energy_kwh": 3.0},
        {"period_start": d1, "team": "x-2", "team_name": "<b>R&D</b> %{y}", "energy_kwh": 2.0},
        {"period_start": d1, "team": "plain", "team_name": None, "energy_kwh": 1.0},
    ]
    fig = figures.stacked_over_time(rows, by="team", metric="energy_kwh", title="E", unit="kWh")
    escaped = "&lt;b&gt;R&amp;D&lt;/b&gt; &#37;{y}"
    assert [t["name"] for t in fig["data"]] == ["研究チーム", escaped, escaped, "plain"]
    assert [t["y"] for t in fig["data"]] == [[5.0], [3.0], [2.0], [1.0]]
    assert fig["data"][1]["hovertemplate"] == f"%{{x}}<br>{escaped}: %{{y:.2f}} kWh<extra></extra>"
    bars = figures.ranked_bars(rows[:2], by="team", metric="energy_kwh", title="R", unit="kWh")
    assert list(bars["data"][0]["y"]) == [escaped, "研究チーム"]
