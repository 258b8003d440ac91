"""Test runner for the real MicroPython interpreter (the unix port has no unittest).

Usage (from the repository root):  micropython tests/mp/runner.py tests/drivers/test_x.py ...

Each file is a test module written in the MicroPython subset: module-level functions named
``test_*`` taking no arguments, using plain ``assert``. The same files are collected by
pytest on CPython, so one set of tests checks both interpreters. Prints one line per
failure with its traceback, then ``N passed, N failed`` and exits 1 on any failure.
"""

import sys

sys.path.insert(0, ".")


def _module_name(path):
    if path.endswith(".py"):
        path = path[:-3]
    return path.replace("/", ".")


def main(paths):
    passed = 0
    failed = 0
    for path in paths:
        name = _module_name(path)
        try:
            __import__(name)
            mod = sys.modules[name]
        except Exception as e:  # an import error fails the whole file, loudly
            failed += 1
            print("FAIL", name, "(import)")
            sys.print_exception(e)  # type: ignore[attr-defined]
            continue
        names = [n for n in dir(mod) if n.startswith("test_")]
        names.sort()
        for n in names:
            fn = getattr(mod, n)
            if not callable(fn):
                continue
            try:
                fn()
                passed += 1
            except Exception as e:
                failed += 1
                print("FAIL", name + "." + n)
                sys.print_exception(e)  # type: ignore[attr-defined]
    print("micropython: %d passed, %d failed" % (passed, failed))
    if failed or not passed:
        sys.exit(1)


main(sys.argv[1:])
