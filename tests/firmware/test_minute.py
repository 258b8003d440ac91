"""Minute accumulator: counting flags, the 75 % boundary, the dominant-reason rule."""

from firmware.minute import MinuteAccumulator, required_valid

RUNS_ON_MICROPYTHON = True

NAN = float("nan")
TS = 1764374400


def _acc(**kw):
    return MinuteAccumulator(1, 1000, **kw)  # one channel polled every second: exp 60


def _feed(acc, spec, ch=0):
    """spec: list of (count, flag, value)."""
    for count, flag, value in spec:
        for _ in range(count):
            acc.add(ch, value, flag)


def _close(spec, **kw):
    acc = _acc(**kw)
    _feed(acc, spec)
    return acc, acc.close(TS)


def test_required_valid_is_an_integer_ceiling():
    assert required_valid(60, 750) == 45
    assert required_valid(59, 750) == 45  # 44.25 -> 45
    assert required_valid(4, 750) == 3
    assert required_valid(0, 750) == 0
    assert required_valid(12, 1000) == 12


def test_45_of_60_is_valid():
    _, r = _close([(45, "N", 10.0)])  # 15 polls never arrived
    assert r.ts == TS
    assert r.n_valid[0] == 45 and r.n_expected[0] == 60
    assert r.flag[0] == "N"
    assert r.mean[0] == 10.0 and r.min[0] == 10.0 and r.max[0] == 10.0


def test_44_of_60_is_invalid_with_reason_missing_polls_as_b():
    _, r = _close([(44, "N", 10.0)])
    assert r.n_valid[0] == 44 and r.n_expected[0] == 60
    assert r.flag[0] == "B"
    assert r.mean[0] == 10.0  # stats stay, over the valid samples


def test_44_valid_reason_is_dominant_non_counting_flag():
    _, r = _close([(44, "N", 1.0), (16, "C", 500.0)])
    assert r.flag[0] == "C"
    assert r.max[0] == 1.0  # calibration gas never reaches the stats
    _, r = _close([(44, "N", 1.0), (10, "C", 500.0)])  # 10 C vs 6 missing (B)
    assert r.flag[0] == "C"
    _, r = _close([(44, "N", 1.0), (5, "C", 500.0)])  # 5 C vs 11 missing
    assert r.flag[0] == "B"


def test_ties_go_to_the_more_serious_flag():
    _, r = _close([(44, "N", 1.0), (8, "C", 1.0), (8, "D", NAN)])
    assert r.flag[0] == "D"  # D before C in SEVERITY
    _, r = _close([(44, "N", 1.0), (8, "D", NAN)])  # 8 D vs 8 missing
    assert r.flag[0] == "B"  # B is the most serious
    _, r = _close([(44, "N", 1.0), (8, "M", 1.0), (8, "S", 1.0)])
    assert r.flag[0] == "M"


def test_t_counts_and_marks_a_valid_minute():
    _, r = _close([(44, "N", 10.0), (1, "T", 999.0)])
    assert r.n_valid[0] == 45 and r.flag[0] == "T"
    assert r.max[0] == 999.0
    _, r = _close([(43, "N", 10.0), (1, "T", 999.0)])
    assert r.flag[0] == "B"  # invalid: T is not a reason


def test_mean_min_max_over_counting_samples_only():
    acc = _acc()
    for v in (1.0, 2.0, 3.0, 6.0):
        acc.add(0, v, "N")
    acc.add(0, NAN, "D")
    acc.add(0, 1000.0, "C")
    acc.add(0, -5.0, "M")
    acc.add(0, NAN, "B")
    r = acc.close(TS)
    assert r.n_valid[0] == 4 and r.n_expected[0] == 60
    assert r.mean[0] == 3.0 and r.min[0] == 1.0 and r.max[0] == 6.0
    # 4 valid: invalid; non-counting D1 C1 M1 B1 + 52 missing -> B
    assert r.flag[0] == "B"


def test_no_valid_sample_gives_nan_stats_and_none_values():
    _, r = _close([(60, "D", NAN)])
    assert r.n_valid[0] == 0 and r.flag[0] == "D"
    assert r.mean[0] != r.mean[0]
    assert r.value("mean", 0) is None and r.value("min", 0) is None
    assert r.value("max", 0) is None


def test_nothing_at_all_is_b():
    _, r = _close([])
    assert r.n_valid[0] == 0 and r.n_expected[0] == 60 and r.flag[0] == "B"
    acc = _acc()
    r = acc.close(TS, n_expected=0)
    assert r.flag[0] == "B" and r.n_expected[0] == 0


def test_nan_with_a_counting_flag_is_a_fault():
    acc, r = _close([(50, "N", 2.0), (10, "N", NAN)])
    assert acc.nonfinite_as_fault == 10
    assert r.n_valid[0] == 50 and r.mean[0] == 2.0 and r.flag[0] == "N"
    acc, r = _close([(40, "N", 2.0), (20, "T", float("inf"))])
    assert r.flag[0] == "D" and r.max[0] == 2.0 and acc.nonfinite_as_fault == 20


def test_unknown_flag_counts_as_fault():
    acc, r = _close([(40, "N", 2.0), (20, "X", 2.0), (1, "NN", 2.0)])
    assert acc.unknown_flags == 21 and r.flag[0] == "D"


def test_fraction_is_configurable():
    _, r = _close([(30, "N", 1.0)], fraction=0.5)
    assert r.flag[0] == "N"
    _, r = _close([(29, "N", 1.0)], fraction=0.5)
    assert r.flag[0] == "B"
    _, r = _close([(59, "N", 1.0), (1, "C", 1.0)], fraction=1.0)
    assert r.flag[0] == "C"
    for bad in (0, -0.1, 1.01):
        try:
            _acc(fraction=bad)
            raise AssertionError("fraction accepted: " + repr(bad))
        except ValueError:
            pass


def test_counting_set_is_configurable():
    _, r = _close([(45, "N", 1.0), (15, "T", 9.0)], counting="N")
    assert r.n_valid[0] == 45 and r.flag[0] == "N" and r.max[0] == 1.0
    _, r = _close([(40, "N", 1.0), (20, "T", 9.0)], counting="N")
    assert r.flag[0] == "T"  # a non-counting T can be the reason


def test_close_resets_and_more_samples_than_scheduled():
    acc = _acc()
    _feed(acc, [(61, "N", 1.0)])  # scheduler jitter: 61 polls in the minute
    r = acc.close(TS)
    assert r.n_valid[0] == 61 and r.n_expected[0] == 61 and r.flag[0] == "N"
    r = acc.close(TS + 60)  # nothing since
    assert r.ts == TS + 60 and r.n_valid[0] == 0 and r.flag[0] == "B"
    assert r.value("mean", 0) is None


def test_expected_override_for_a_partial_minute():
    acc = _acc()
    _feed(acc, [(20, "N", 1.0)])
    r = acc.close(TS, n_expected=20)  # booted 40 s into the minute
    assert r.n_expected[0] == 20 and r.flag[0] == "N"


def test_channels_are_independent_with_their_own_poll_interval():
    acc = MinuteAccumulator(3, [1000, 5000, 60000])
    assert list(acc.scheduled) == [60, 12, 1]
    _feed(acc, [(45, "N", 1.0)], ch=0)
    _feed(acc, [(8, "N", 2.0), (4, "B", NAN)], ch=1)
    _feed(acc, [(1, "T", 7.5)], ch=2)
    r = acc.close(TS)
    assert list(r.flag) == ["N", "B", "T"]
    assert r.flag[1] == "B"  # 8 < ceil(9) -> 4 B samples are the reason
    assert r.mean[1] == 2.0 and r.n_expected[1] == 12 and r.mean[2] == 7.5


def test_result_is_preallocated_and_aliased():
    acc = _acc()
    r1 = acc.close(TS)
    r2 = acc.close(TS + 60)
    assert r1 is r2


def test_bad_construction():
    for args in ((0, 1000), (1, 0), (1, 60001), (2, [1000])):
        try:
            MinuteAccumulator(*args)
            raise AssertionError("accepted: " + repr(args))
        except ValueError:
            pass
    try:
        MinuteAccumulator(1, 1000, counting="NX")
        raise AssertionError("unknown counting flag accepted")
    except ValueError:
        pass
