"""Lantian native kernels: Cython batch computations for the gateway.

Each kernel `x` lives in `_x_c.pyx` (compiled) and `_x_py.py` (its pure-Python twin with
the same names); a selector module `x.py` imports the compiled twin and falls back to the
Python one. Set ``LANTIAN_PURE_PYTHON=1`` to force the pure-Python twins.

Kernels:

- `native.aggregate`: minute → hour → day averages with GB 3095 validity counts and the
  reason of every invalid hour (HJ 212 flags), O3 8-hour moving averages and the HJ 663
  daily maximum 8-hour average, the HJ 663 percentile.
- `native.aqi`: HJ 633 IAQI over arrays of concentrations (both generations, exact
  ceilings and GB/T 8170 rounding, the > 800 rules), AQI and primary pollutants over
  indicators, good-day counts.
"""
