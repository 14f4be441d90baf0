"""The window average both the best window and the SDK's forecast use, against the examples the
Carbon Aware SDK documents for its rolling average (``EmissionsDataExtensions``): there 5-minute
points and a 10-minute window, here hourly points and a 2-hour window, the same numbers."""

from __future__ import annotations

import pytest

from ecoreport.savings import calc

H = calc.HOUR_S


@pytest.mark.parametrize(
    ("values", "window_s", "start_s", "end_s", "averages", "optimal"),
    [
        # "[10, 20, 30, 40, 5]: the optimal single point is the last one, but our workload
        # cannot start at that time and finish within the dataset" -> [15, 25, 35, 22.5].
        ([10, 20, 30, 40, 5], 2 * H, 0, None, [15, 25, 35, 22.5], [0]),
        # "[5, 55, 10, 10, 10]" -> [30, 32.5, 10, 10]: both tied windows are optimal.
        ([5, 55, 10, 10, 10], 2 * H, 0, None, [30, 32.5, 10, 10], [2, 3]),
        # "[12, 11, 10, 12, 13]" -> [11.5, 10.5, 11, 12.5].
        ([12, 11, 10, 12, 13], 2 * H, 0, None, [11.5, 10.5, 11, 12.5], [1]),
        # AverageOverPeriod's example: (01:00, 30), (02:00, 100), (03:00, 50) over 01:30-03:30
        # is 30/4 + 100/2 + 50/4 = 70; the next window would run past the data.
        ([30, 100, 50], 2 * H, H // 2, None, [70.0], [0]),
        # No window beyond the scope's end: 3 one-hour windows fit before 03:00.
        ([1, 2, 3, 4, 5], H, 0, 3 * H, [1, 2, 3], [0]),
        # A window shorter than an hour takes the hour it lies in.
        ([7, 3, 9], 600, 0, None, [7, 3, 9], [1]),
        # A window longer than the data: nothing to rank, as the SDK's empty forecastData.
        ([7, 3, 9], 4 * H, 0, None, [], []),
    ],
)
def test_window_averages_follow_the_sdks_documented_examples(
    values, window_s, start_s, end_s, averages, optimal
):
    got = calc.window_averages(values, window_s=window_s, start_s=start_s, end_s=end_s)
    assert got == pytest.approx(averages)
    assert calc.lowest(got) == optimal


def test_the_best_window_is_the_earliest_of_the_lowest_window_averages():
    best, now = calc.best_window([5, 55, 10, 10, 10], duration_h=2)
    assert (best.start_index, best.avg_intensity_g_per_kwh) == (2, 10.0)
    assert now.avg_intensity_g_per_kwh == 30.0


def test_equal_windows_computed_from_different_hours_are_one_optimum():
    # 0.1 + 0.2 != 0.3 in floats; the two windows are still equally good.
    got = calc.window_averages([0.1, 0.2, 0.3, 0.0], window_s=2 * H)
    assert calc.lowest([got[0], got[2]]) == [0, 1]
