"""Lantian drivers: the Modbus RTU layer shared by the station firmware (MicroPython)
and the test rigs (CPython).

Everything under drivers/ is written in the MicroPython subset, imports nothing else of
the project, and runs unchanged on both interpreters.
"""
