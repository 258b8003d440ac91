"""The compiled AQI twin really is what runs where it was built; the selector's switches work.

`make setup` builds native/*.pyx in place. A missing or stale `_aqi_c` build is a failure
that says so, never a skip: a silent fallback to the Python twin would pass every other
test while running far slower.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from native import _aqi_py
from tests.native.test_aqi_kernel import compiled_aqi
from tests.tooling import ROOT

KERNELS = ("iaqi", "aqi_max", "count_good")
NATIVE = ROOT / "native"
SELECTOR = NATIVE / "aqi.py"


def fresh_selector(monkeypatch: pytest.MonkeyPatch, pure_python: str | None) -> ModuleType:
    """A new, unregistered copy of native/aqi.py run under the given environment."""
    if pure_python is None:
        monkeypatch.delenv("LANTIAN_PURE_PYTHON", raising=False)
    else:
        monkeypatch.setenv("LANTIAN_PURE_PYTHON", pure_python)
    spec = importlib.util.spec_from_file_location("_aqi_selector_probe", SELECTOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def built_extension() -> Path:
    built = sorted(NATIVE.glob("_aqi_c.*.so")) + sorted(NATIVE.glob("_aqi_c.*.pyd"))
    assert built, "native/_aqi_c.pyx has not been built (no .so next to it): run `make setup`"
    return built[-1]


def test_compiled_twin_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    extension = built_extension()
    pyx = NATIVE / "_aqi_c.pyx"
    assert extension.stat().st_mtime >= pyx.stat().st_mtime, (
        f"{extension.name} is older than {pyx.name}: stale build, run `make setup`"
    )
    c = compiled_aqi()
    assert Path(c.__file__ or "").resolve() == extension.resolve()
    selector = fresh_selector(monkeypatch, None)
    assert selector.IMPLEMENTATION == "cython", selector.FALLBACK_REASON
    assert selector.FALLBACK_REASON is None
    for name in KERNELS:
        assert getattr(selector, name) is getattr(c, name), name
        assert getattr(c, name) is not getattr(_aqi_py, name), name


@pytest.mark.parametrize("value", ["1", "yes"])
def test_environment_forces_the_python_twin(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    selector = fresh_selector(monkeypatch, value)
    assert selector.IMPLEMENTATION == "python"
    assert "LANTIAN_PURE_PYTHON" in (selector.FALLBACK_REASON or "")
    for name in KERNELS:
        assert getattr(selector, name) is getattr(_aqi_py, name), name


def test_zero_does_not_force_python(monkeypatch: pytest.MonkeyPatch) -> None:
    built_extension()
    assert fresh_selector(monkeypatch, "0").IMPLEMENTATION == "cython"


def test_twins_expose_the_same_names() -> None:
    c = compiled_aqi()
    assert sorted(c.__all__) == sorted(_aqi_py.__all__) == sorted(KERNELS)
    stub = (NATIVE / "_aqi_c.pyi").read_text(encoding="utf-8")
    for name in KERNELS:
        assert f"def {name}(" in stub, f"_aqi_c.pyi lacks {name}"


def test_make_rebuilds_when_a_pyx_changes() -> None:
    """The Makefile's build stamp depends on every native/*.pyx, this one included."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "NATIVE_PYX := $(wildcard native/*.pyx)" in makefile
    assert "$(VENV)/.native: $(VENV)/.deps setup.py $(NATIVE_PYX)" in makefile
