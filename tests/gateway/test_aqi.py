"""IAQI/AQI by HJ 633-2012 and HJ 633-2026 (gateway/standards/aqi.py).

Golden values are computed by hand from the breakpoint table of spec/standards.md §3,
IAQI = (I_hi − I_lo)/(BP_hi − BP_lo)·(C − BP_lo) + I_lo, then rounded up; the arithmetic
is in the comment next to each case.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.standards import (
    AQI_LEVELS,
    DAILY_INDICATORS,
    GENERATIONS,
    HJ633_2012,
    HJ633_2026,
    INDICATORS,
    AqiResult,
    FallbackRequiredError,
    InvalidValueError,
    UnknownNameError,
    aqi_level,
    breakpoint_table,
    count_good_days,
    daily_aqi,
    hourly_aqi,
    iaqi,
    is_good_day,
)

G12, G26 = HJ633_2012, HJ633_2026


# ---------------------------------------------------------------- breakpoint tables


SPEC_TABLE = {
    # indicator: (2012 column, 2026 column), concentrations at IAQI 0, 50, ..., 500
    "so2_24h": ((0, 50, 150, 475, 800, 1600, 2100, 2620),) * 2,
    "so2_1h": ((0, 150, 500, 650, 800),) * 2,
    "no2_24h": ((0, 40, 80, 180, 280, 565, 750, 940),) * 2,
    "no2_1h": ((0, 100, 200, 700, 1200, 2340, 3090, 3840),) * 2,
    "pm10_24h": ((0, 50, 150, 250, 350, 420, 500, 600), (0, 50, 120, 250, 350, 420, 500, 600)),
    "co_24h": ((0, 2, 4, 14, 24, 36, 48, 60),) * 2,
    "co_1h": ((0, 5, 10, 35, 60, 90, 120, 150),) * 2,
    "o3_1h": ((0, 160, 200, 300, 400, 800, 1000, 1200),) * 2,
    "o3_8h": ((0, 100, 160, 215, 265, 800),) * 2,
    "pm25_24h": ((0, 35, 75, 115, 150, 250, 350, 500), (0, 35, 60, 115, 150, 250, 350, 500)),
}


@pytest.mark.parametrize("indicator", sorted(SPEC_TABLE))
def test_breakpoint_tables_are_the_spec_tables(indicator: str) -> None:
    for generation, column in zip(GENERATIONS, SPEC_TABLE[indicator], strict=True):
        table = breakpoint_table(generation, indicator)
        assert table.concentrations == tuple(Decimal(c) for c in column)
        assert table.iaqis == (0, 50, 100, 150, 200, 300, 400, 500)[: len(column)]
        assert table.unit == ("mg/m³" if indicator.startswith("co") else "µg/m³")


@pytest.mark.parametrize("generation", GENERATIONS)
def test_hourly_pm_uses_the_24h_breakpoints(generation: str) -> None:
    for pollutant in ("pm10", "pm25"):
        hourly = breakpoint_table(generation, f"{pollutant}_1h")
        daily = breakpoint_table(generation, f"{pollutant}_24h")
        assert hourly.concentrations == daily.concentrations


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("indicator", sorted(SPEC_TABLE))
def test_every_breakpoint_gives_its_iaqi_exactly(generation: str, indicator: str) -> None:
    table = breakpoint_table(generation, indicator)
    for c, expected in zip(table.concentrations, table.iaqis, strict=True):
        result = iaqi(generation, indicator, c)
        assert result.exact == expected
        assert result.iaqi == expected
        assert result.rule is None


# ---------------------------------------------------------------- golden IAQIs

GOLDEN = [
    # (generation, indicator, concentration, IAQI)
    (G12, "pm25_24h", 35.01, 51),  # 50/40·0.01 + 50 = 50.0125 → 51 (ceiling)
    (G12, "so2_24h", 50.02, 51),  # 50/100·0.02 + 50 = 50.01 → 51
    (G12, "pm25_24h", 80, 107),  # 50/40·5 + 100 = 106.25 → 107
    (G26, "pm25_24h", 80, 119),  # 50/55·20 + 100 = 118.18… → 119
    (G12, "pm25_24h", 60, 82),  # 50/40·25 + 50 = 81.25 → 82
    (G26, "pm25_24h", 60, 100),  # breakpoint of the 2026 column
    (G12, "pm10_24h", 120, 85),  # 50/100·70 + 50 = 85 exactly → 85
    (G26, "pm10_24h", 120, 100),  # breakpoint of the 2026 column
    (G12, "pm10_24h", 150, 100),  # breakpoint of the 2012 column
    (G26, "pm10_24h", 150, 112),  # 50/130·30 + 100 = 111.54 → 112
    (G12, "co_24h", 2.04, 51),  # 25·0.04 + 50 = 51 exactly (float 2.04 is 2.0400…036)
    (G12, "no2_24h", 100, 110),  # 50/100·20 + 100 = 110
    (G12, "no2_1h", 150, 75),  # 50/100·50 + 50 = 75
    (G12, "co_1h", 12, 104),  # 50/25·2 + 100 = 104
    (G12, "o3_1h", 500, 225),  # 100/400·100 + 200 = 225
    (G12, "o3_8h", 300, 207),  # 100/535·35 + 200 = 206.54… → 207
    (G26, "so2_1h", 575, 125),  # 50/150·75 + 100 = 125
]


@pytest.mark.parametrize(("generation", "indicator", "concentration", "expected"), GOLDEN)
def test_golden_iaqi(generation: str, indicator: str, concentration: float, expected: int) -> None:
    assert iaqi(generation, indicator, concentration).iaqi == expected


def test_ceiling_not_rounding() -> None:
    # SO2 24 h 50.02 → exact 50.01: rounds up to 51, never to 50.
    result = iaqi(G12, "so2_24h", 50.02)
    assert result.exact == Fraction(5001, 100)
    assert result.iaqi == 51
    # Exactly on an integer stays: PM10 2012 120 → 85.
    assert iaqi(G12, "pm10_24h", 120).exact == 85


def test_float_is_read_as_its_decimal_repr() -> None:
    # 2.04 in binary is slightly above 2.04; the IAQI is still exactly 51, not 52.
    assert iaqi(G12, "co_24h", 2.04).concentration == Decimal("2.04")
    assert iaqi(G12, "co_24h", Decimal("2.04")).iaqi == 51


# ---------------------------------------------------------------- 2026 round-half-even


@pytest.mark.parametrize(
    ("indicator", "concentration", "rounded", "expected"),
    [
        ("pm25_24h", 60.5, "60", 100),  # half → even 60: breakpoint → 100
        ("pm25_24h", 61.5, "62", 102),  # half → even 62: 50/55·2 + 100 = 101.82 → 102
        ("pm25_24h", 60.49, "60", 100),
        ("pm25_24h", 60.51, "61", 101),  # 50/55·1 + 100 = 100.91 → 101
        ("o3_8h", 100.5, "100", 50),  # → 100: breakpoint
        ("o3_8h", 101.5, "102", 52),  # 50/60·2 + 50 = 51.67 → 52
        ("co_24h", 0.25, "0.2", 5),  # 25·0.2 = 5
        ("co_24h", 0.35, "0.4", 10),  # 25·0.4 = 10
        ("co_24h", 2.05, "2.0", 50),
        ("co_24h", 2.15, "2.2", 55),  # Python's round(2.15, 1) is 2.1 (binary); GB/T 8170: 2.2
        ("so2_24h", 50.5, "50", 50),
        ("no2_24h", 40.5, "40", 50),
        ("pm10_24h", 120.5, "120", 100),
    ],
)
def test_2026_rounds_half_even_before_computing(
    indicator: str, concentration: float, rounded: str, expected: int
) -> None:
    result = iaqi(G26, indicator, concentration)
    assert result.computed_from == Decimal(rounded)
    assert result.concentration == Decimal(repr(concentration))
    assert result.iaqi == expected


def test_2012_uses_the_concentration_as_measured() -> None:
    # PM2.5 60.5: 50/40·25.5 + 50 = 81.875 → 82; CO 0.25: 25·0.25 = 6.25 → 7.
    assert iaqi(G12, "pm25_24h", 60.5).computed_from == Decimal("60.5")
    assert iaqi(G12, "pm25_24h", 60.5).iaqi == 82
    assert iaqi(G12, "co_24h", 0.25).iaqi == 7


# ---------------------------------------------------------------- the > 800 rules


def test_so2_1h_above_800_2012_uses_the_24h_iaqi() -> None:
    # SO2 24 h 200: 50/325·50 + 100 = 107.69 → 108.
    result = iaqi(G12, "so2_1h", 900, fallback=200)
    assert result.iaqi == 108
    assert result.rule == "so2_1h_above_800:use_so2_24h"
    assert result.substitute is not None
    assert result.substitute.indicator == "so2_24h"
    assert result.substitute.iaqi == 108


def test_so2_1h_above_800_2012_needs_the_24h_value() -> None:
    with pytest.raises(FallbackRequiredError) as info:
        iaqi(G12, "so2_1h", 800.1)
    assert info.value.needs == "so2_24h"
    with pytest.raises(FallbackRequiredError):
        hourly_aqi(G12, {"so2_1h": 801})


def test_so2_1h_at_800_is_on_the_table() -> None:
    for generation in GENERATIONS:
        result = iaqi(generation, "so2_1h", 800)
        assert (result.iaqi, result.rule) == (200, None)


def test_so2_1h_above_800_2026_is_200() -> None:
    result = iaqi(G26, "so2_1h", 5000)
    assert (result.iaqi, result.rule) == (200, "so2_1h_above_800:iaqi_200")
    # 800.4 rounds to 800 first: on the table, no special rule.
    assert iaqi(G26, "so2_1h", 800.4).rule is None
    assert iaqi(G26, "so2_1h", 800.6).rule == "so2_1h_above_800:iaqi_200"


def test_o3_8h_above_800_2012_uses_the_1h_iaqi() -> None:
    # O3 1 h 500: 100/400·100 + 200 = 225.
    result = iaqi(G12, "o3_8h", 900, fallback=500)
    assert (result.iaqi, result.rule) == (225, "o3_8h_above_800:use_o3_1h")
    with pytest.raises(FallbackRequiredError) as info:
        iaqi(G12, "o3_8h", 801)
    assert info.value.needs == "o3_1h"
    # In a daily report the O3 1 h value comes from the same mapping.
    day = daily_aqi(G12, {"o3_8h": 900, "o3_1h": 500})
    assert day.aqi == 225
    assert day.primary_pollutants == ("o3_1h", "o3_8h")  # tie: both
    with pytest.raises(FallbackRequiredError):
        daily_aqi(G12, {"o3_8h": 900, "o3_1h": None})


def test_o3_8h_above_800_2026_is_300() -> None:
    assert iaqi(G26, "o3_8h", 800).iaqi == 300
    result = iaqi(G26, "o3_8h", 1500)
    assert (result.iaqi, result.rule) == (300, "o3_8h_above_800:iaqi_300")


def test_hourly_so2_fallback_in_the_report() -> None:
    hour = hourly_aqi(G12, {"so2_1h": 900, "pm25_1h": 80}, so2_24h=200)
    # SO2 → 108 (via 24 h); PM2.5 1 h on the 2012 24 h table: 107.
    assert hour.aqi == 108
    assert hour.primary_pollutants == ("so2_1h",)
    # The 2026 rule needs no 24 h value.
    assert hourly_aqi(G26, {"so2_1h": 900}).aqi == 200


# ---------------------------------------------------------------- above the scale


@pytest.mark.parametrize("generation", GENERATIONS)
def test_above_the_top_breakpoint_is_capped_and_flagged(generation: str) -> None:
    for indicator, c in [("pm25_24h", 600), ("so2_24h", 3000), ("co_1h", 151), ("o3_1h", 1201)]:
        result = iaqi(generation, indicator, c)
        assert result.iaqi == 500
        assert result.above_scale
        assert result.concentration == c
    assert not iaqi(generation, "pm25_24h", 500).above_scale


# ---------------------------------------------------------------- bad input


def test_bad_input_is_a_named_error() -> None:
    with pytest.raises(UnknownNameError):
        iaqi("HJ633-2099", "pm25_24h", 10)
    with pytest.raises(UnknownNameError):
        iaqi(G12, "pm25_8h", 10)
    with pytest.raises(InvalidValueError):
        iaqi(G12, "pm25_24h", -0.1)
    with pytest.raises(InvalidValueError):
        iaqi(G12, "pm25_24h", float("nan"))
    with pytest.raises(InvalidValueError):
        iaqi(G12, "pm25_24h", float("inf"))
    with pytest.raises(UnknownNameError):
        daily_aqi(G12, {"pm25_1h": 10})  # an hourly indicator in a daily report
    with pytest.raises(UnknownNameError):
        hourly_aqi(G12, {"pm25_24h": 10})


# ---------------------------------------------------------------- levels


@pytest.mark.parametrize(
    ("aqi", "numeral", "zh", "en", "colour", "rgb"),
    [
        (0, "I", "优", "Excellent", "green", (0, 228, 0)),
        (50, "I", "优", "Excellent", "green", (0, 228, 0)),
        (51, "II", "良", "Good", "yellow", (255, 255, 0)),
        (100, "II", "良", "Good", "yellow", (255, 255, 0)),
        (101, "III", "轻度污染", "Lightly polluted", "orange", (255, 126, 0)),
        (150, "III", "轻度污染", "Lightly polluted", "orange", (255, 126, 0)),
        (151, "IV", "中度污染", "Moderately polluted", "red", (255, 0, 0)),
        (200, "IV", "中度污染", "Moderately polluted", "red", (255, 0, 0)),
        (201, "V", "重度污染", "Heavily polluted", "purple", (153, 0, 76)),
        (300, "V", "重度污染", "Heavily polluted", "purple", (153, 0, 76)),
        (301, "VI", "严重污染", "Severely polluted", "maroon", (126, 0, 35)),
        (500, "VI", "严重污染", "Severely polluted", "maroon", (126, 0, 35)),
    ],
)
def test_levels(
    aqi: int, numeral: str, zh: str, en: str, colour: str, rgb: tuple[int, int, int]
) -> None:
    level = aqi_level(aqi)
    assert (level.numeral, level.category_zh, level.category_en) == (numeral, zh, en)
    assert (level.colour, level.rgb) == (colour, rgb)


def test_levels_cover_0_to_500_without_gaps() -> None:
    assert AQI_LEVELS[0].aqi_low == 0
    for lower, upper in itertools.pairwise(AQI_LEVELS):
        assert lower.aqi_high is not None
        assert upper.aqi_low == lower.aqi_high + 1
    assert AQI_LEVELS[-1].aqi_high is None
    with pytest.raises(InvalidValueError):
        aqi_level(-1)


# ---------------------------------------------------------------- daily reports

DAY = {
    "so2_24h": 20,  # 50/50·20 = 20
    "no2_24h": 50,  # 50/40·10 + 50 = 62.5 → 63
    "pm10_24h": 180,  # 2012: 50/100·30 + 100 = 115; 2026: 50/130·60 + 100 = 123.08 → 124
    "co_24h": 1.2,  # 25·1.2 = 30
    "o3_1h": 120,  # 50/160·120 = 37.5 → 38
    "o3_8h": 110,  # 50/60·10 + 50 = 58.33 → 59
    "pm25_24h": 120,  # 50/35·5 + 150 = 157.14 → 158 (same in both)
}


def test_daily_report_2012() -> None:
    day = daily_aqi(G12, DAY)
    assert [r.iaqi for r in day.iaqis] == [20, 63, 115, 30, 38, 59, 158]
    assert day.aqi == 158
    assert day.published and day.aqi_text == "158"
    assert day.level is not None and day.level.numeral == "IV"
    assert day.primary_pollutants == ("pm25_24h",)
    assert day.exceeding_pollutants == ("pm10_24h", "pm25_24h")  # IAQI > 100
    assert day.missing == () and day.unmonitored == ()
    assert day.good_day is False


def test_daily_report_2026_has_no_exceeding_pollutants() -> None:
    day = daily_aqi(G26, DAY)
    assert [r.iaqi for r in day.iaqis] == [20, 63, 124, 30, 38, 59, 158]
    assert day.aqi == 158
    assert day.exceeding_pollutants == ()


def test_primary_pollutant_ties_are_all_listed() -> None:
    # 2012 PM2.5 75 → 100, PM10 150 → 100: AQI 100, both primary.
    day = daily_aqi(G12, {"pm25_24h": 75, "pm10_24h": 150, "so2_24h": 10})
    assert day.aqi == 100
    assert day.primary_pollutants == ("pm10_24h", "pm25_24h")
    assert day.exceeding_pollutants == ()  # 100 is not > 100
    # A tie made by the ceiling: 50.0125 → 51 and 50.01 → 51.
    day = daily_aqi(G12, {"pm25_24h": 35.01, "so2_24h": 50.02})
    assert day.primary_pollutants == ("so2_24h", "pm25_24h")


def test_no_primary_pollutant_at_or_below_50() -> None:
    day = daily_aqi(G12, {"pm25_24h": 35, "pm10_24h": 20})
    assert day.aqi == 50
    assert day.primary_pollutants == ()
    assert daily_aqi(G12, {"pm25_24h": 35.01}).primary_pollutants == ("pm25_24h",)


def test_2026_missing_data_publishes_only_above_100() -> None:
    # PM2.5 60 → 100 with PM10 missing: 100 is not > 100 → NA.
    day = daily_aqi(G26, {"pm25_24h": 60, "pm10_24h": None})
    assert day.aqi == 100
    assert not day.published
    assert day.aqi_text == "NA" and day.level_text == "NA" and day.level is None
    assert day.primary_pollutants == ()
    assert day.good_day is None
    assert day.display("pm25_24h") == "100"
    assert day.display("pm10_24h") == "NA"
    assert day.display("so2_24h") == "/"
    assert day.missing == ("pm10_24h",)
    assert "so2_24h" in day.unmonitored
    # PM2.5 61 → 50/55·1 + 100 = 100.91 → 101 > 100: published, a lower bound.
    day = daily_aqi(G26, {"pm25_24h": 61, "pm10_24h": None})
    assert (day.aqi, day.published, day.aqi_text) == (101, True, "101")
    assert day.level is not None and day.level.numeral == "III"
    assert day.primary_pollutants == ("pm25_24h",)


def test_2026_complete_data_is_always_published() -> None:
    # Nothing missing (CO not monitored is "/", not "NA").
    day = daily_aqi(G26, {"pm25_24h": 20, "pm10_24h": 30})
    assert day.published and day.aqi == 30  # PM10 30: 50/50·30 = 30
    assert day.good_day is True
    assert day.display("co_24h") == "/"


def test_2012_missing_data_computes_from_the_rest() -> None:
    day = daily_aqi(G12, {"pm25_24h": 20, "pm10_24h": None})
    assert day.published and day.aqi == 29  # 50/35·20 = 28.57 → 29
    assert day.missing == ("pm10_24h",)


def test_nothing_measured_is_na() -> None:
    for generation in GENERATIONS:
        day = daily_aqi(generation, {"pm25_24h": None})
        assert day.aqi is None and not day.published and day.aqi_text == "NA"
        assert daily_aqi(generation, {}).unmonitored == DAILY_INDICATORS


def test_display_of_an_unknown_indicator() -> None:
    with pytest.raises(UnknownNameError):
        daily_aqi(G12, {"pm25_24h": 1}).display("pm25_1h")


# ---------------------------------------------------------------- good days


def test_good_days() -> None:
    assert is_good_day(100) and not is_good_day(101) and is_good_day(0)
    days: list[AqiResult | int | None] = [
        daily_aqi(G12, {"pm25_24h": 75}),  # 100: good
        daily_aqi(G12, {"pm25_24h": 75.01}),  # 50/40·0.01 + 100 = 100.0125 → 101: not
        daily_aqi(G26, {"pm25_24h": 10, "pm10_24h": None}),  # NA: not counted
        50,
        101,
        None,
    ]
    assert count_good_days(days) == 2


# ---------------------------------------------------------------- properties

MONOTONE = [(g, i) for g in GENERATIONS for i in INDICATORS]
MONOTONE.remove((G12, "so2_1h"))  # above 800 its IAQI is another indicator's
MONOTONE.remove((G12, "o3_8h"))

concentrations = st.decimals(min_value=0, max_value=4500, places=3)


@given(st.sampled_from(MONOTONE), concentrations, concentrations)
def test_iaqi_is_monotone_in_concentration(case: tuple[str, str], a: Decimal, b: Decimal) -> None:
    generation, indicator = case
    lo, hi = min(a, b), max(a, b)
    assert iaqi(generation, indicator, lo).iaqi <= iaqi(generation, indicator, hi).iaqi


@given(st.sampled_from(MONOTONE), concentrations)
def test_iaqi_is_the_ceiling_of_the_exact_value(case: tuple[str, str], c: Decimal) -> None:
    result = iaqi(*case, c)
    assert 0 <= result.iaqi <= 500
    assert result.exact <= result.iaqi < result.exact + 1


@given(st.sampled_from(INDICATORS), concentrations)
def test_2026_rounding_is_idempotent(indicator: str, c: Decimal) -> None:
    first = iaqi(G26, indicator, c)
    assert iaqi(G26, indicator, first.computed_from).iaqi == first.iaqi


def _daily_values() -> st.SearchStrategy[dict[str, Decimal | None]]:
    value = st.one_of(st.none(), st.decimals(min_value=0, max_value=700, places=1))
    return st.dictionaries(st.sampled_from(DAILY_INDICATORS), value)


@given(st.sampled_from(GENERATIONS), _daily_values())
def test_aqi_is_the_max_iaqi(generation: str, values: dict[str, Decimal | None]) -> None:
    # Keep O3 8 h on the table so that the 2012 fallback needs no O3 1 h.
    if values.get("o3_8h") is not None:
        values["o3_8h"] = min(values["o3_8h"] or Decimal(0), Decimal(800))
    day = daily_aqi(generation, values)
    present = {k: v for k, v in values.items() if v is not None}
    expected = [iaqi(generation, k, v).iaqi for k, v in present.items()]
    assert day.aqi == (max(expected) if expected else None)
    assert len(day.iaqis) == len(present)
    assert set(day.missing) == {k for k, v in values.items() if v is None}
    assert set(day.unmonitored) == set(DAILY_INDICATORS) - set(values)
    if day.published and day.aqi is not None:
        assert day.level == aqi_level(day.aqi)
        assert all(day.iaqi_of(p) is not None for p in day.primary_pollutants)
        if day.aqi > 50:
            winners = {r.indicator for r in day.iaqis if r.iaqi == day.aqi}
            assert set(day.primary_pollutants) == winners
    if generation == G26 and day.missing and day.aqi is not None:
        assert day.published == (day.aqi > 100)
