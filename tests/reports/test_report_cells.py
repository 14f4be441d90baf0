"""Report cells: one format per numeric column whatever type the database summed to, years and
other identifiers without a thousands separator, a row's own decimals in a mixed column."""

from __future__ import annotations

import pytest

from ecoreport.reports.tables import Column, Table, fmt


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (35328, 2, "35,328.00"),  # an int summed by the database, in a column of floats
        (35328.0, 2, "35,328.00"),
        (16, 0, "16"),
        (2026, None, "2026"),  # a year in a text column
        (1.5, None, "1.50"),
        (None, 2, "—"),
        (True, None, "yes"),
        ("FR", None, "FR"),
    ],
)
def test_fmt(value, digits, text):
    assert fmt(value, digits) == text


def test_a_column_reads_alike_and_a_row_may_fix_its_decimals():
    table = Table(
        "t",
        "T",
        [
            Column("item", "Item", digits=None),
            Column("value", "Value"),
            Column("year", "Year", digits=None),
        ],
        [
            {"item": "Expected GPU-hours", "value": 35328, "year": 2026},
            {"item": "Measured GPU-hours", "value": 35328.0, "year": 2026},
            {"item": "GPUs known", "value": 16, "digits": 0, "year": 2025},
        ],
    )
    assert table.formatted() == [
        ["Expected GPU-hours", "35,328.00", "2026"],
        ["Measured GPU-hours", "35,328.00", "2026"],
        ["GPUs known", "16", "2025"],
    ]


def test_a_shown_label_is_for_people_and_the_row_keeps_the_value():
    column = Column("metric", "Metric", digits=None, shown=lambda r: r.get("label"))
    table = Table(
        "t", "T", [column], [{"metric": "energy_kwh", "label": "IT energy"}, {"metric": "x"}]
    )
    assert table.formatted() == [["IT energy"], ["x"]]
    assert table.rows[0]["metric"] == "energy_kwh"
