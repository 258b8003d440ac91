"""HJ 212-2017 data flags (table 8) and how they combine.

A sample, minute, hour or day carries one flag. Flags are one-character strings; the
constants below are the only instances the drivers and firmware use, so comparing and
storing them allocates nothing.

| flag | meaning                                                   | counts (default) |
|------|-----------------------------------------------------------|------------------|
| N    | normal                                                    | yes              |
| T    | above the instrument's upper measuring limit (value kept) | yes              |
| F    | instrument stopped                                        | no               |
| M    | maintenance                                               | no               |
| S    | manually entered value                                    | no               |
| D    | instrument fault                                          | no               |
| C    | calibration                                               | no               |
| B    | communication failure between instrument and data logger  | no               |

Which flags count toward an average is a rule-set setting of the gateway; the station
uses the default above.
"""

NORMAL = "N"
OVER_RANGE = "T"
STOPPED = "F"
MAINTENANCE = "M"
MANUAL = "S"
FAULT = "D"
CALIBRATION = "C"
COMM_FAILURE = "B"

ALL = "NTFMSDCB"

# When several conditions hold for one sample the most serious one is reported. A fault
# or a lost link means the value is not a measurement at all; calibration and maintenance
# mean the instrument is deliberately not measuring ambient air; T keeps the value.
# Earlier in this string = reported first.
SEVERITY = "BDFCMSTN"

COUNTS_BY_DEFAULT = "NT"


def is_flag(flag):
    return len(flag) == 1 and flag in ALL


def worse(a, b):
    """The more serious of two flags (by ``SEVERITY``)."""
    return a if SEVERITY.find(a) <= SEVERITY.find(b) else b


def counts(flag, counting=COUNTS_BY_DEFAULT):
    """Whether a sample with ``flag`` counts toward an average."""
    return flag in counting
