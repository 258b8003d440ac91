"""Device profiles: the shipped reference profiles, the read plan, the register image and
every validation error (drivers/profile.py).

Shared test module: MicroPython subset, plain assert, no pytest (tests/mp/runner.py).
"""

import os
from array import array

from drivers.profile import (
    MAX_GAP,
    Profile,
    ProfileError,
    list_profiles,
    load_profile,
    load_profile_file,
    profiles_directory,
)

RUNS_ON_MICROPYTHON = True

REFERENCE = ("nox-analyser", "nox-analyser-cdab", "particulate", "particulate-x10", "voc-pid")


def _channel(name="no2", address=2, **kw):
    ch = {
        "name": name,
        "function": 4,
        "address": address,
        "type": "float32",
        "word_order": "ABCD",
        "scale": 1.0,
        "offset": 0.0,
        "raw_unit": "ppb",
        "unit": "ug/m3",
        "gas": "NO2",
        "range": [0, 20000],
        "missing": {"nan": True},
    }
    for k in kw:
        ch[k] = kw[k]
    return ch


def _base(**kw):
    d = {
        "format": 1,
        "name": "test-profile",
        "title": "A test analyser",
        "source": "unit test",
        "serial": {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1},
        "default_address": 1,
        "response_timeout_ms": 500,
        "warmup_s": 60,
        "channels": [_channel()],
        "status": [{"function": 4, "address": 6, "type": "uint16", "bits": {"0": "C", "1": "D"}}],
    }
    for k in kw:
        d[k] = kw[k]
    return d


def _expect_error(d, *fragments):
    try:
        Profile.from_dict(d)
    except ProfileError as e:
        msg = str(e)
        assert "test-profile" in msg or d.get("name") != "test-profile", msg
        for fragment in fragments:
            assert fragment in msg, f"{fragment!r} not in {msg!r}"
        return e
    raise AssertionError(f"no ProfileError for {fragments!r}")


# --- the shipped profiles -----------------------------------------------------------


def test_reference_profiles_are_shipped():
    names = list_profiles()
    for name in REFERENCE:
        assert name in names, name


def test_every_shipped_profile_loads():
    for name in list_profiles():
        p = load_profile(name)
        assert p.name == name
        assert p.title and p.source
        assert len(p.channel_names) == p.channel_count == len(p.units) >= 1
        assert len(p.image) == sum(r[2] for r in p.reads)


def test_reference_profiles_claim_no_manual():
    # None of the maps could be checked against a real manual here.
    for name in REFERENCE:
        assert load_profile(name).source == "reference emulation", name


def test_nox_analyser():
    for name, order in (("nox-analyser", False), ("nox-analyser-cdab", True)):
        p = load_profile(name)
        assert p.reads == [(4, 0, 7)], p.reads
        assert p.channel_names == ("no", "no2", "nox")
        assert p.units == ("ug/m3", "ug/m3", "ug/m3")
        assert p.raw_units == ("ppb", "ppb", "ppb")
        assert p.gases == ("NO", "NO2", "NOx")
        assert p.channel_index == (0, 2, 4)
        assert p.channel_low_word_first == (order, order, order)
        assert p.channel_factor == (1.227, 1.880, 1.880)
        assert p.status_index == (6,)
        assert p.channel_status == ((0,), (0,), (0,))
        assert (p.baudrate, p.bytesize, p.parity, p.stopbits) == (9600, 8, "N", 1)
        assert p.response_timeout_ms == 500
        assert p.warmup_s == 60
        assert p.channel_missing_nan == (True, True, True)


def test_particulate():
    p = load_profile("particulate")
    assert p.reads == [(3, 0, 2)]
    assert p.channel_names == ("pm25", "pm10")
    assert p.units == ("ug/m3", "ug/m3")
    assert p.ranges == ((0.0, 1000.0), (0.0, 1000.0))
    assert p.channel_sentinel_first == (0xFFFF, 0xFFFF)
    assert p.default_address == 1
    assert p.warmup_s == 120
    assert p.response_timeout_ms <= 250
    x10 = load_profile("particulate-x10")
    assert x10.reads == [(3, 0, 2)]
    assert x10.channel_scale == (0.1, 0.1)
    assert x10.channel_sentinel_first == (0xFFFF, 0xFFFF)


def test_voc_pid():
    p = load_profile("voc-pid")
    assert p.reads == [(3, 0, 6)], p.reads  # info 0,1,3,4 + reading 2 + status 5
    assert p.channel_names == ("tvoc",)
    assert p.channel_scale == (0.1,)
    assert abs(p.channel_factor[0] - 56.106 / 24.465) < 1e-12
    assert p.status_is_codes == (True,)
    assert p.status_other == ("D",)
    assert [f[0] for f in p.info_fields] == ["gas_type", "range", "span_value", "sensor_life"]


def test_profiles_directory_is_next_to_the_module():
    assert profiles_directory().endswith("profiles")
    assert "particulate.json" in os.listdir(profiles_directory())


def test_load_profile_with_directory():
    p = load_profile("particulate", profiles_directory())
    assert p.name == "particulate"
    q = load_profile_file(profiles_directory() + "/nox-analyser.json")
    assert q.name == "nox-analyser"


# --- read plan and image ------------------------------------------------------------


def test_small_gaps_are_read_through():
    d = _base(status=[])
    d["channels"] = [_channel("a", 0), _channel("b", 2 + MAX_GAP)]
    p = Profile.from_dict(d)
    assert p.reads == [(4, 0, 4 + MAX_GAP)], p.reads
    assert p.channel_index == (0, 2 + MAX_GAP)


def test_large_gaps_and_functions_split_reads():
    d = _base()
    d["channels"] = [
        _channel("a", 20),
        _channel("b", 0),
        _channel("c", 0, function=3, type="uint16", missing={"sentinel": 65535}),
    ]
    del d["channels"][2]["word_order"]
    d["status"] = [
        {
            "function": 3,
            "address": 1,
            "type": "uint16",
            "codes": {"0": "N"},
            "other": "D",
            "channels": ["c"],
        }
    ]
    p = Profile.from_dict(d)
    assert p.reads == [(3, 0, 2), (4, 0, 2), (4, 20, 2)], p.reads
    assert p.read_offsets == (0, 2, 4)
    assert len(p.image) == 6
    assert p.channel_index == (4, 2, 0)
    assert p.status_index == (1,)
    assert p.channel_status == ((), (), (0,))


def test_store_copies_registers_into_the_image():
    d = _base(status=[])
    d["channels"] = [_channel("a", 0), _channel("b", 40)]
    p = Profile.from_dict(d)
    assert p.reads == [(4, 0, 2), (4, 40, 2)]
    p.store(1, array("H", [0x41AC, 0]), 2)
    p.store(0, [1, 2], 2)
    assert list(p.image) == [1, 2, 0x41AC, 0]


def test_store_rejects_a_wrong_count():
    p = load_profile("nox-analyser")
    try:
        p.store(0, [0] * 6, 6)
    except ValueError:
        return
    raise AssertionError("short read accepted")


# --- validation ---------------------------------------------------------------------


def test_base_is_valid():
    p = Profile.from_dict(_base())
    assert p.name == "test-profile"
    assert p.reads == [(4, 2, 5)]


def test_error_is_a_value_error_with_attributes():
    e = _expect_error(_base(format=2), "format")
    assert isinstance(e, ValueError)
    assert e.profile == "test-profile"
    assert e.field == "format"
    assert "2" in e.problem


def test_missing_top_level_keys():
    for key in (
        "format",
        "name",
        "title",
        "source",
        "serial",
        "default_address",
        "response_timeout_ms",
        "warmup_s",
        "channels",
    ):
        d = _base()
        del d[key]
        _expect_error(d, "missing key", key)


def test_missing_channel_keys():
    for key in ("name", "function", "address", "type", "raw_unit", "unit", "range"):
        d = _base()
        del d["channels"][0][key]
        _expect_error(d, "channels[0]", "missing key", key)


def test_missing_serial_and_status_keys():
    d = _base()
    del d["serial"]["parity"]
    _expect_error(d, "serial", "parity")
    d = _base()
    del d["status"][0]["address"]
    _expect_error(d, "status[0]", "address")


def test_unknown_keys_are_errors_but_x_keys_are_not():
    _expect_error(_base(sample_rate=1), "unknown key", "sample_rate")
    d = _base()
    d["channels"][0]["scael"] = 0.1
    _expect_error(d, "channels[0] (no2)", "scael")
    d = _base()
    d["x-emulator"] = {"noise": 0.1}
    d["channels"][0]["x-emulator"] = {"mean": 20}
    Profile.from_dict(d)


def test_unknown_type():
    d = _base()
    d["channels"][0]["type"] = "float64"
    _expect_error(d, "channels[0] (no2).type", "float64")


def test_word_order_missing_invalid_or_misplaced():
    d = _base()
    del d["channels"][0]["word_order"]
    _expect_error(d, "no2", "word_order", "missing")
    d = _base()
    d["channels"][0]["word_order"] = "BADC"
    _expect_error(d, "no2", "word_order", "BADC")
    d = _base()
    d["channels"][0]["type"] = "uint16"
    del d["channels"][0]["missing"]
    _expect_error(d, "no2", "word_order", "32-bit")
    d = _base(info=[{"name": "serial_no", "function": 4, "address": 10, "type": "uint32"}])
    _expect_error(d, "info[0] (serial_no).word_order")


def test_duplicate_info_names():
    info = {"name": "life", "function": 3, "address": 10, "type": "uint16"}
    d = _base(info=[info, info])
    _expect_error(d, "info[1].name", "duplicate")


def test_overlapping_channels():
    d = _base()
    d["channels"].append(_channel("nox", 3, gas="NOx"))
    _expect_error(d, "channels[1] (nox).address", "overlap", "no2")
    # Same addresses in different function codes are different registers.
    d = _base()
    d["channels"].append(_channel("nox", 2, gas="NOx", function=3))
    Profile.from_dict(d)


def test_status_overlapping_a_channel():
    d = _base()
    d["status"][0]["address"] = 3
    _expect_error(d, "status[0].address", "no2")


def test_duplicate_channel_names():
    d = _base()
    d["channels"].append(_channel("no2", 10))
    _expect_error(d, "channels[1].name", "duplicate")


def test_unknown_flag_letters():
    d = _base()
    d["status"][0]["bits"]["3"] = "X"
    _expect_error(d, "status[0].bits.3", "unknown flag")
    d = _base()
    d["status"] = [
        {"function": 4, "address": 6, "type": "uint16", "codes": {"0": "N", "1": "c"}, "other": "D"}
    ]
    _expect_error(d, "status[0].codes.1", "unknown flag")
    d["status"][0]["codes"]["1"] = "C"
    d["status"][0]["other"] = "DD"
    _expect_error(d, "status[0].other", "unknown flag")


def test_status_shape_errors():
    d = _base()
    d["status"][0]["codes"] = {"0": "N"}
    _expect_error(d, "status[0]", "exactly one")
    d = _base()
    del d["status"][0]["bits"]
    _expect_error(d, "status[0]", "exactly one")
    d = _base()
    d["status"] = [{"function": 4, "address": 6, "type": "uint16", "codes": {"0": "N"}}]
    _expect_error(d, "status[0]", "other")
    d = _base()
    d["status"][0]["bits"] = {"16": "D"}
    _expect_error(d, "status[0].bits", "0..15")
    d = _base()
    d["status"][0]["type"] = "float32"
    _expect_error(d, "status[0].type")
    d = _base()
    d["status"][0]["channels"] = ["so2"]
    _expect_error(d, "status[0].channels", "so2")
    d = _base()
    d["status"][0]["meaning"] = {"5": "what"}
    _expect_error(d, "status[0].meaning", "5")


def test_bad_unit_conversion():
    d = _base()
    d["channels"][0]["gas"] = "H2S"
    _expect_error(d, "channels[0] (no2).unit", "H2S")
    d = _base()
    del d["channels"][0]["gas"]
    _expect_error(d, "channels[0] (no2).unit", "gas")
    d = _base()
    d["channels"][0]["unit"] = "furlongs"
    _expect_error(d, "channels[0] (no2).unit", "furlongs")
    d = _base()
    d["channels"][0]["raw_unit"] = "ug/m3"
    d["channels"][0]["unit"] = "ppb"
    _expect_error(d, "channels[0] (no2).unit")


def test_bad_registers_and_serial():
    d = _base()
    d["channels"][0]["function"] = 6
    _expect_error(d, "no2).function")
    d = _base()
    d["channels"][0]["address"] = 65535  # a float32 needs two registers
    _expect_error(d, "no2).address")
    d = _base()
    d["channels"][0]["address"] = -1
    _expect_error(d, "no2).address")
    d = _base()
    d["serial"]["parity"] = "X"
    _expect_error(d, "serial.parity")
    d = _base()
    d["serial"]["baudrate"] = "9600"
    _expect_error(d, "serial.baudrate")
    _expect_error(_base(default_address=0), "default_address")
    _expect_error(_base(default_address=True), "default_address")
    _expect_error(_base(response_timeout_ms=0), "response_timeout_ms")
    _expect_error(_base(warmup_s=-1), "warmup_s")
    _expect_error(_base(channels=[]), "channels")


def test_bad_range_scale_missing():
    for rng in ([0], [10, 0], ["0", "1"], 1000):
        d = _base()
        d["channels"][0]["range"] = rng
        _expect_error(d, "no2).range")
    d = _base()
    d["channels"][0]["scale"] = 0
    _expect_error(d, "no2).scale")
    d = _base()
    d["channels"][0]["missing"] = {"sentinel": 70000, "nan": True}
    d["channels"][0]["type"] = "uint16"
    del d["channels"][0]["word_order"]
    _expect_error(d, "no2).missing")
    d = _base()
    d["channels"][0]["type"] = "int16"
    del d["channels"][0]["word_order"]
    d["channels"][0]["missing"] = {"sentinel": 65535}  # int16 sentinels are signed
    _expect_error(d, "no2).missing.sentinel")
    d["channels"][0]["missing"] = {"sentinel": -1}
    p = Profile.from_dict(d)
    assert p.channel_sentinel_first == (0xFFFF,)
    d["channels"][0]["missing"] = {"nan": True}
    _expect_error(d, "no2).missing.nan", "float32")
    d["channels"][0]["missing"] = {}
    _expect_error(d, "no2).missing")


def test_name_must_match_the_file_and_be_a_file_name():
    _expect_error(_base(name="../etc/passwd"), "name")
    try:
        load_profile("../profile")
    except ProfileError as e:
        assert "name" in str(e)
    else:
        raise AssertionError("path in a profile name accepted")


def _scratch_dir():
    path = "/tmp/lantian-test-profiles"
    try:
        os.stat(path)
    except OSError:
        os.mkdir(path)
    return path


def test_file_errors():
    directory = _scratch_dir()
    with open(directory + "/broken.json", "w") as f:
        f.write('{"format": 1, "name": ')
    with open(directory + "/renamed.json", "w") as f:
        f.write('{"format": 1, "name": "other", "title": "t", "source": "s"}')
    for name, fragment in (("broken", "JSON"), ("missing", "cannot read"), ("renamed", "other")):
        try:
            load_profile(name, directory)
        except ProfileError as e:
            assert name in str(e) and fragment in str(e), str(e)
        else:
            raise AssertionError(name)
