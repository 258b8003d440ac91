"""The AQI kernels (native/aqi.py): golden vectors from HJ 633 table 1 and GB/T 8170, and
agreement of both twins with the exact scalar reference `gateway.standards.aqi`.

Every behavioural test runs over both twins (`aqi_twin` fixture); a missing compiled twin
fails with "run `make setup`", never skips. The reference reads a float by its shortest
repr and computes with Decimal/Fraction, so "agrees" means the same integer for every
float, including those one ulp either side of every ceiling threshold and rounding tie.
"""

from __future__ import annotations

import math
from decimal import Decimal
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.standards import aqi as ref
from native import _aqi_py
from native.aqi import (
    INVALID,
    MISSING,
    NO_FALLBACK,
    RULE_ABOVE_SCALE,
    RULE_FALLBACK,
    RULE_FIXED,
    RULE_INTERPOLATED,
    KernelInputError,
)
from tests.native.conftest import compiled

NAN = math.nan
I32 = npt.NDArray[np.int32]
CASES = [(g, i) for g in ref.GENERATIONS for i in ref.INDICATORS]
NEEDS = {"so2_1h": "so2_24h", "o3_8h": "o3_1h"}  # 2012: over 800, that indicator's IAQI
FIXED_2026 = {"so2_1h": 200, "o3_8h": 300}
REF_RULES = {
    None: RULE_INTERPOLATED,
    ref.RULE_ABOVE_SCALE: RULE_ABOVE_SCALE,
    ref.RULE_SO2_1H_FIXED_200: RULE_FIXED,
    ref.RULE_O3_8H_FIXED_300: RULE_FIXED,
    ref.RULE_SO2_1H_USE_24H: RULE_FALLBACK,
    ref.RULE_O3_8H_USE_1H: RULE_FALLBACK,
}


def compiled_aqi() -> ModuleType:
    return compiled("aqi")


@pytest.fixture(scope="session", params=("cython", "python"))
def aqi_twin(request: pytest.FixtureRequest) -> ModuleType:
    return compiled_aqi() if request.param == "cython" else _aqi_py


def f64(values: list[float]) -> npt.NDArray[np.float64]:
    return np.array(values, dtype=np.float64)


def i32(values: list[int]) -> I32:
    return np.array(values, dtype=np.int32)


def table(generation: str, indicator: str) -> tuple[list[float], list[int]]:
    t = ref.breakpoint_table(generation, indicator)
    return [float(c) for c in t.concentrations], list(t.iaqis)


def policy(generation: str, indicator: str) -> dict[str, Any]:
    """The kernel arguments for one indicator of one generation, from the reference's
    tables (the fallback array of the 2012 rule is added by the caller)."""
    conc, iaqis = table(generation, indicator)
    kwargs: dict[str, Any] = {"bp_conc": f64(conc), "bp_iaqi": f64([float(i) for i in iaqis])}
    if generation == ref.HJ633_2026:
        kwargs["places"] = 1 if indicator.startswith("co_") else 0
        if indicator in FIXED_2026:
            kwargs["fixed_above"] = FIXED_2026[indicator]
    return kwargs


def run(
    twin: ModuleType,
    generation: str,
    indicator: str,
    values: list[float],
    fallback_values: list[float] | None = None,
) -> Any:
    """The kernel on ``values``; for the 2012 rule, the fallback IAQIs are computed by the
    same twin from ``fallback_values`` (NaN where none)."""
    kwargs = policy(generation, indicator)
    if generation == ref.HJ633_2012 and indicator in NEEDS:
        fb = fallback_values if fallback_values is not None else [NAN] * len(values)
        kwargs["fallback"] = run(twin, generation, NEEDS[indicator], fb).iaqi
    return twin.iaqi(f64(values), **kwargs)


def expected(generation: str, indicator: str, x: float, fallback: float = NAN) -> tuple[int, int]:
    """(IAQI, rule code) from the exact scalar reference, sentinels for what it rejects."""
    if math.isnan(x):
        return MISSING, RULE_INTERPOLATED
    if math.isinf(x) or x < 0:
        return INVALID, RULE_INTERPOLATED
    fb = None if math.isnan(fallback) else fallback
    try:
        r = ref.iaqi(generation, indicator, x, fallback=fb)
    except ref.FallbackRequiredError:
        return NO_FALLBACK, RULE_FALLBACK
    except ref.InvalidValueError:  # the fallback concentration is negative or infinite
        return INVALID, RULE_FALLBACK
    return r.iaqi, REF_RULES[r.rule]


def assert_matches_reference(
    twin: ModuleType,
    generation: str,
    indicator: str,
    values: list[float],
    fallback_values: list[float] | None = None,
) -> None:
    fb = fallback_values if fallback_values is not None else [NAN] * len(values)
    got = run(twin, generation, indicator, values, fb)
    want = [expected(generation, indicator, x, f) for x, f in zip(values, fb, strict=True)]
    pairs = list(zip(got.iaqi.tolist(), got.rule.tolist(), strict=True))
    bad = [(repr(x), g, w) for x, g, w in zip(values, pairs, want, strict=True) if g != w]
    assert not bad, f"{generation} {indicator}: (value, kernel, reference) {bad[:5]}"


# ---------------------------------------------------------------- golden vectors
@pytest.mark.parametrize(
    ("generation", "indicator", "value", "iaqi"),
    [
        # On a breakpoint: that breakpoint's IAQI (both segments agree).
        ("HJ633-2012", "pm25_24h", 0.0, 0),
        ("HJ633-2012", "pm25_24h", 35.0, 50),
        ("HJ633-2012", "pm25_24h", 75.0, 100),
        ("HJ633-2012", "pm25_24h", 500.0, 500),
        ("HJ633-2026", "pm25_24h", 60.0, 100),  # 2026 moved the IAQI 100 breakpoint to 60
        ("HJ633-2012", "pm25_24h", 60.0, 82),  # 50 + 50·25/40 = 81.25 → 82
        ("HJ633-2026", "pm10_24h", 120.0, 100),
        ("HJ633-2012", "so2_24h", 2620.0, 500),
        ("HJ633-2012", "co_1h", 150.0, 500),
        # Just above a breakpoint: the ceiling moves up by one.
        ("HJ633-2012", "pm25_24h", 35.001, 51),
        ("HJ633-2012", "pm25_24h", 35.1, 51),
        ("HJ633-2012", "pm25_24h", 5e-324, 1),  # smallest positive float: above 0
        # Ceiling exactly on an integer: no float error may add one.
        ("HJ633-2012", "no2_1h", 1211.4, 201),  # float formula: 200 + 1.000000000000008
        ("HJ633-2012", "so2_24h", 2110.4, 402),
        ("HJ633-2012", "so2_24h", 156.5, 101),  # 100 + 50·6.5/325 = 101 exactly
        ("HJ633-2012", "o3_8h", 275.7, 202),  # 200 + 100·10.7/535 = 202 exactly
        ("HJ633-2012", "co_24h", 2.04, 51),  # 50 + 50·0.04/2 = 51 exactly
        ("HJ633-2012", "co_24h", 2.0400000000000005, 52),  # one ulp above 2.04
        # 2026 pre-rounding, GB/T 8170 half to even.
        ("HJ633-2026", "pm25_24h", 60.5, 100),  # → 60
        ("HJ633-2026", "pm25_24h", 61.5, 102),  # → 62: 100 + 50·2/55 = 101.8 → 102
        ("HJ633-2026", "pm25_24h", 60.49, 100),
        ("HJ633-2026", "pm25_24h", 60.500000000000001, 100),  # the same float as 60.5
        ("HJ633-2026", "pm25_24h", 60.50000000000001, 101),  # above the tie → 61
        ("HJ633-2026", "co_24h", 0.25, 5),  # → 0.2: 50·0.2/2 = 5
        ("HJ633-2026", "co_24h", 0.35, 10),  # → 0.4
        ("HJ633-2026", "co_24h", 0.8500000000000001, 23),  # → 0.9 (x·10 rounds to 8.5)
        ("HJ633-2026", "co_24h", 3.3499999999999996, 83),  # → 3.3 (x·10 rounds to 33.5)
        ("HJ633-2012", "co_24h", 0.25, 7),  # 2012: 6.25 → 7
        ("HJ633-2026", "pm25_24h", 500.4, 500),  # → 500: on the scale
        ("HJ633-2026", "pm25_24h", 500.5, 500),  # → 500 (even): on the scale
    ],
)
def test_golden_iaqi(
    aqi_twin: ModuleType, generation: str, indicator: str, value: float, iaqi: int
) -> None:
    got = run(aqi_twin, generation, indicator, [value])
    assert got.iaqi.tolist() == [iaqi]
    assert got.above_scale.tolist() == [0]
    assert got.iaqi.dtype == np.int32 and got.rule.dtype == np.uint8
    assert ref.iaqi(generation, indicator, value).iaqi == iaqi  # the reference agrees


def test_above_the_scale_is_500_with_the_mask(aqi_twin: ModuleType) -> None:
    values = [500.0, 500.0000000000001, 501.0, 1e300]
    for generation in ref.GENERATIONS:
        got = run(aqi_twin, generation, "pm25_24h", values)
        assert got.iaqi.tolist() == [500] * 4
        expected_mask = [0, 0, 1, 1] if generation == ref.HJ633_2026 else [0, 1, 1, 1]
        assert got.above_scale.tolist() == expected_mask
        assert got.above_scale.dtype == np.uint8


def test_missing_and_invalid_values_are_codes(aqi_twin: ModuleType) -> None:
    got = run(aqi_twin, "HJ633-2026", "pm10_24h", [NAN, -0.5, -math.inf, math.inf, -0.0, 1.0])
    assert got.iaqi.tolist() == [MISSING, INVALID, INVALID, INVALID, 0, 1]
    assert got.rule.tolist() == [RULE_INTERPOLATED] * 6


def test_over_800_rules_2026_are_fixed(aqi_twin: ModuleType) -> None:
    # SO2 1 h: 800 is on the scale (IAQI 200); 800.5 rounds to 800 (even); 801 is over.
    so2 = run(aqi_twin, "HJ633-2026", "so2_1h", [800.0, 800.5, 801.0, 5000.0])
    assert so2.iaqi.tolist() == [200, 200, 200, 200]
    assert so2.rule.tolist() == [RULE_INTERPOLATED, RULE_INTERPOLATED, RULE_FIXED, RULE_FIXED]
    o3 = run(aqi_twin, "HJ633-2026", "o3_8h", [800.0, 801.0, 1e6])
    assert o3.iaqi.tolist() == [300, 300, 300]
    assert o3.rule.tolist() == [RULE_INTERPOLATED, RULE_FIXED, RULE_FIXED]
    assert o3.above_scale.tolist() == [0, 0, 0]


def test_over_800_rules_2012_take_the_fallback_iaqi(aqi_twin: ModuleType) -> None:
    # SO2 1 h over 800 takes the SO2 24 h IAQI: 475 → 150, 2620 → 500, none → NO_FALLBACK.
    so2 = run(aqi_twin, "HJ633-2012", "so2_1h", [800.0, 900.0, 900.0, 900.0], [1, 475, 2620, NAN])
    assert so2.iaqi.tolist() == [200, 150, 500, NO_FALLBACK]
    assert so2.rule.tolist() == [RULE_INTERPOLATED, *[RULE_FALLBACK] * 3]
    # O3 8 h over 800 takes the O3 1 h IAQI: 1000 → 400; 800.0000000000001 is over (2012);
    # an invalid O3 1 h makes the O3 8 h IAQI invalid too.
    o3 = run(aqi_twin, "HJ633-2012", "o3_8h", [800.0000000000001, 850.0], [1000.0, -5.0])
    assert o3.iaqi.tolist() == [400, INVALID]
    assert o3.rule.tolist() == [RULE_FALLBACK, RULE_FALLBACK]


def test_empty_input(aqi_twin: ModuleType) -> None:
    got = run(aqi_twin, "HJ633-2012", "pm10_24h", [])
    assert got.iaqi.shape == (0,) and got.rule.shape == (0,)
    r = aqi_twin.aqi_max(np.zeros((3, 0), dtype=np.int32))
    assert r.aqi.shape == (0,) and r.primary.shape == (3, 0)
    assert aqi_twin.count_good(i32([])) == 0


# ---------------------------------------------------------------- every threshold, exactly
def thresholds(generation: str, indicator: str) -> list[float]:
    """Every value where the ceiling or the 2026 rounding changes, as the float of its
    decimal and the floats one ulp below and above: breakpoints, each t_m on each segment,
    and each rounding tie up to the top + 2."""
    conc, iaqis = table(generation, indicator)
    points: set[Decimal] = set()
    for k in range(1, len(conc)):
        lo, hi = Decimal(int(conc[k - 1])), Decimal(int(conc[k]))
        d_i = iaqis[k] - iaqis[k - 1]
        points.update(lo + m * (hi - lo) / d_i for m in range(d_i + 1))
    if generation == ref.HJ633_2026:
        step = Decimal("0.1") if indicator.startswith("co_") else Decimal(1)
        n_steps = int((Decimal(int(conc[-1])) + 2) / step)
        points.update((j + Decimal("0.5")) * step for j in range(n_steps))
    values: list[float] = []
    for p in sorted(points):
        x = float(p)
        values += [math.nextafter(x, -math.inf), x, math.nextafter(x, math.inf)]
    return [v for v in values if v >= 0]


@pytest.mark.parametrize(("generation", "indicator"), CASES)
def test_every_threshold_matches_the_reference(
    aqi_twin: ModuleType, generation: str, indicator: str
) -> None:
    values = thresholds(generation, indicator)
    fb = [1000.0] * len(values)  # an O3 1 h / SO2 24 h concentration for the 2012 rule
    assert_matches_reference(aqi_twin, generation, indicator, values, fb)


# ---------------------------------------------------------------- properties
def concentrations(top: float, *, invalid: bool = True) -> st.SearchStrategy[float]:
    """Decimals of up to 3 places, random floats, and floats within two ulps of a
    half-unit tie (0.5 µg/m³, 0.05 mg/m³), from 0 to 30 % above the top breakpoint; NaN;
    and (``invalid``) a negative value. Drawn directly, never filtered."""
    high = top * 1.3
    decimals = st.integers(0, 3).flatmap(
        lambda places: st.integers(0, int(high * 10**places)).map(
            lambda digits: float(Decimal(digits).scaleb(-places))
        )
    )
    floats = st.floats(0, high, allow_nan=False, allow_infinity=False)
    ties = st.builds(
        lambda j, unit, ulps: _nudge(float((j + Decimal("0.5")) * unit), ulps),
        st.integers(0, int(high)),
        st.sampled_from([Decimal("0.1"), Decimal(1)]),
        st.integers(-2, 2),
    )
    special = [st.just(NAN), *([st.just(-1.0)] if invalid else [])]
    return st.one_of(decimals, floats, ties, *special)


def _nudge(x: float, ulps: int) -> float:
    for _ in range(abs(ulps)):
        x = math.nextafter(x, math.inf if ulps > 0 else -math.inf)
    return x


@pytest.mark.parametrize(("generation", "indicator"), CASES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_twins_agree_with_the_reference(
    aqi_twin: ModuleType, generation: str, indicator: str, data: st.DataObject
) -> None:
    top = table(generation, indicator)[0][-1]
    values = data.draw(st.lists(concentrations(top), max_size=40), label="values")
    fb_top = table(generation, NEEDS.get(indicator, indicator))[0][-1]
    fallback = data.draw(
        st.lists(concentrations(fb_top), min_size=len(values), max_size=len(values)),
        label="fallback",
    )
    assert_matches_reference(aqi_twin, generation, indicator, values, fallback)


@settings(max_examples=200, deadline=None)
@given(
    case=st.sampled_from(CASES),
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_twins_agree_on_any_float(case: tuple[str, str], values: list[float], seed: int) -> None:
    """Any float at all (huge, tiny, subnormal, negative, ±inf, NaN): the same integers."""
    generation, indicator = case
    rng = np.random.default_rng(seed)
    fallback = rng.uniform(0, 1300, len(values)).tolist()
    c = run(compiled_aqi(), generation, indicator, values, fallback)
    p = run(_aqi_py, generation, indicator, values, fallback)
    assert c.iaqi.tolist() == p.iaqi.tolist()
    assert c.rule.tolist() == p.rule.tolist()


# ---------------------------------------------------------------- AQI, primary, good days
def test_aqi_max_golden(aqi_twin: ModuleType) -> None:
    iaqi_2d = i32(
        [
            # col: 0    1    2         3        4      5   6
            [40, 120, MISSING, 80, MISSING, 50, 30],
            [45, 120, MISSING, INVALID, MISSING, 51, 30],
            [10, 90, 60, 200, MISSING, 51, NO_FALLBACK],
        ]
    )
    r = aqi_twin.aqi_max(iaqi_2d)
    assert r.aqi.tolist() == [45, 120, 60, INVALID, MISSING, 51, NO_FALLBACK]
    assert r.aqi.dtype == np.int32 and r.primary.dtype == np.uint8
    assert r.primary.tolist() == [
        [0, 1, 0, 0, 0, 0, 0],  # AQI 45 ≤ 50: no primary pollutant
        [0, 1, 0, 0, 0, 1, 0],  # ties: all of them
        [0, 0, 1, 0, 0, 1, 0],
    ]
    assert aqi_twin.count_good(r.aqi) == 3  # 45, 60, 51; not 120, nor the codes
    assert aqi_twin.count_good(i32([0, 100, 101, MISSING, 500])) == 2


@pytest.mark.parametrize("generation", ref.GENERATIONS)
@pytest.mark.parametrize("report", ["daily", "hourly"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_aqi_and_primary_match_the_reference_report(
    aqi_twin: ModuleType, generation: str, report: str, data: st.DataObject
) -> None:
    """Whole reports: the kernels' AQI, primary pollutants and good-day count equal
    `daily_aqi` / `hourly_aqi` on the same concentrations, missing ones included."""
    names = ref.DAILY_INDICATORS if report == "daily" else ref.HOURLY_INDICATORS
    n = data.draw(st.integers(1, 12), label="n")
    columns = {
        name: data.draw(
            st.lists(
                concentrations(table(generation, name)[0][-1], invalid=False),
                min_size=n,
                max_size=n,
            ),
            label=name,
        )
        for name in names
    }
    so2_24h = data.draw(
        st.lists(concentrations(2620.0, invalid=False), min_size=n, max_size=n), label="so2"
    )
    rows = []
    for name in names:
        fb = columns["o3_1h"] if name == "o3_8h" else so2_24h if name == "so2_1h" else None
        rows.append(run(aqi_twin, generation, name, columns[name], fb).iaqi)
    result = aqi_twin.aqi_max(np.stack(rows))
    want_good = 0
    for i in range(n):
        mapping = {
            name: (None if math.isnan(columns[name][i]) else columns[name][i]) for name in names
        }
        fb_so2 = None if math.isnan(so2_24h[i]) else so2_24h[i]
        try:
            r = (
                ref.daily_aqi(generation, mapping)
                if report == "daily"
                else ref.hourly_aqi(generation, mapping, so2_24h=fb_so2)
            )
        except ref.FallbackRequiredError:
            assert result.aqi[i] == NO_FALLBACK
            continue
        assert result.aqi[i] == (MISSING if r.aqi is None else r.aqi)
        if r.published:  # (primary pollutants of an unpublished AQI: the caller's policy)
            primary = {name for name, p in zip(names, result.primary[:, i], strict=True) if p}
            assert primary == set(r.primary_pollutants)
        want_good += r.aqi is not None and r.aqi <= 100
    assert aqi_twin.count_good(result.aqi) == want_good


# ---------------------------------------------------------------- bad arguments
def good_args() -> dict[str, Any]:
    return {"concentration": f64([1.0]), **policy("HJ633-2012", "pm25_24h")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concentration": [1.0]}, "numpy array"),
        ({"concentration": np.array([1], dtype=np.int64)}, "dtype float64"),
        ({"bp_conc": f64([0, 35, 75])}, "bp_iaqi has"),
        ({"bp_conc": f64([1, 35]), "bp_iaqi": f64([0, 500])}, "start at 0"),
        ({"bp_conc": f64([0, 35.5]), "bp_iaqi": f64([0, 500])}, "whole numbers"),
        ({"bp_conc": f64([0, 35, 35]), "bp_iaqi": f64([0, 50, 500])}, "strictly increasing"),
        ({"bp_conc": f64([0, 35, 70]), "bp_iaqi": f64([0, 30, 500])}, "divide 1000"),
        ({"bp_conc": f64([0, 2e9]), "bp_iaqi": f64([0, 500])}, "0..1000000000"),
        ({"bp_conc": f64([0]), "bp_iaqi": f64([0])}, "2..8 rows"),
        ({"places": 4}, "places"),
        ({"places": 1.0}, "places"),
        ({"bp_conc": f64([0, 800]), "bp_iaqi": f64([0, 200])}, "fixed_above"),
        ({"fixed_above": 200, "fallback": i32([1])}, "not both"),
        ({"fallback": i32([1, 2])}, "fallback has 2"),
        ({"fallback": np.array([1], dtype=np.int64)}, "int32"),
        ({"fallback": i32([-4])}, "below the lowest code"),
    ],
)
def test_bad_arguments_raise(aqi_twin: ModuleType, change: dict[str, Any], message: str) -> None:
    args = good_args() | change
    concentration = args.pop("concentration")
    with pytest.raises(KernelInputError, match=message):
        aqi_twin.iaqi(concentration, **args)


def test_bad_codes_raise(aqi_twin: ModuleType) -> None:
    with pytest.raises(KernelInputError, match="2-D"):
        aqi_twin.aqi_max(i32([1, 2]))
    with pytest.raises(KernelInputError, match="below the lowest code"):
        aqi_twin.aqi_max(i32([[1, -9]]))
    with pytest.raises(KernelInputError, match="int32"):
        aqi_twin.count_good(np.array([1], dtype=np.int64))
