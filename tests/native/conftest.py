"""The `twin` fixture: every behavioural test runs over both aggregate twins.

A missing compiled twin fails the test that asks for it (with "run `make setup`"); it is
never skipped.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from native import _aggregate_py

TWIN_NAMES = ("cython", "python")


def compiled(kernel: str = "aggregate") -> ModuleType:
    """`native._<kernel>_c`, or a test failure saying how to build it."""
    try:
        return importlib.import_module(f"native._{kernel}_c")
    except ImportError as error:
        pytest.fail(
            f"the compiled twin native._{kernel}_c does not import ({error}); "
            "run `make setup` (it builds native/*.pyx in place)"
        )


def compiled_twin() -> ModuleType:
    return compiled("aggregate")


def load_twin(name: str) -> ModuleType:
    return compiled_twin() if name == "cython" else _aggregate_py


# Session scope: a module object has no state, and hypothesis refuses function-scoped
# fixtures under @given.
@pytest.fixture(scope="session", params=TWIN_NAMES)
def twin(request: pytest.FixtureRequest) -> ModuleType:
    name: str = request.param
    return load_twin(name)
