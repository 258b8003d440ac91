"""The compiled twins really are what runs where they were built; the selectors' switches work.

`make setup` builds native/*.pyx in place (`python setup.py build_ext --inplace`). A
missing or stale build is a failure that says so, never a skip: a silent fallback to the
Python twin would pass every other test while running ~100x slower. Every kernel module
of native/ is checked the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.native.conftest import compiled
from tests.tooling import ROOT

NATIVE = ROOT / "native"
KERNELS = {
    "aggregate": ("hourly", "daily", "minute_to_day", "rolling_mean", "daily_max_8h", "percentile"),
    "aqi": ("iaqi", "aqi_max", "count_good"),
}


def python_twin(kernel: str) -> ModuleType:
    return importlib.import_module(f"native._{kernel}_py")


def fresh_selector(monkeypatch: pytest.MonkeyPatch, kernel: str, pure: str | None) -> ModuleType:
    """A new, unregistered copy of native/<kernel>.py run under the given environment
    (the imported selector keeps whatever it chose at first import)."""
    if pure is None:
        monkeypatch.delenv("LANTIAN_PURE_PYTHON", raising=False)
    else:
        monkeypatch.setenv("LANTIAN_PURE_PYTHON", pure)
    path = NATIVE / f"{kernel}.py"
    spec = importlib.util.spec_from_file_location(f"_{kernel}_selector_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def built_extension(kernel: str) -> Path:
    built = sorted(NATIVE.glob(f"_{kernel}_c.*.so")) + sorted(NATIVE.glob(f"_{kernel}_c.*.pyd"))
    assert built, f"native/_{kernel}_c.pyx has not been built (no .so next to it): run `make setup`"
    return built[-1]


def test_every_pyx_is_checked_here() -> None:
    assert sorted(p.stem.removeprefix("_").removesuffix("_c") for p in NATIVE.glob("*.pyx")) == (
        sorted(KERNELS)
    )


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_compiled_twin_loaded(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    extension = built_extension(kernel)
    pyx = NATIVE / f"_{kernel}_c.pyx"
    assert extension.stat().st_mtime >= pyx.stat().st_mtime, (
        f"{extension.name} is older than {pyx.name}: stale build, run `make setup`"
    )
    c = compiled(kernel)
    assert Path(c.__file__ or "").resolve() == extension.resolve()
    selector = fresh_selector(monkeypatch, kernel, None)
    assert selector.IMPLEMENTATION == "cython", selector.FALLBACK_REASON
    assert selector.FALLBACK_REASON is None
    for name in KERNELS[kernel]:
        assert getattr(selector, name) is getattr(c, name), name
        assert getattr(c, name) is not getattr(python_twin(kernel), name), name


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("value", ["1", "yes"])
def test_environment_forces_the_python_twin(
    monkeypatch: pytest.MonkeyPatch, kernel: str, value: str
) -> None:
    selector = fresh_selector(monkeypatch, kernel, value)
    assert selector.IMPLEMENTATION == "python"
    assert "LANTIAN_PURE_PYTHON" in (selector.FALLBACK_REASON or "")
    for name in KERNELS[kernel]:
        assert getattr(selector, name) is getattr(python_twin(kernel), name), name


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_zero_does_not_force_python(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    built_extension(kernel)
    assert fresh_selector(monkeypatch, kernel, "0").IMPLEMENTATION == "cython"


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_twins_expose_the_same_names(kernel: str) -> None:
    c = compiled(kernel)
    names = sorted(KERNELS[kernel])
    assert sorted(c.__all__) == sorted(python_twin(kernel).__all__) == names
    stub = (NATIVE / f"_{kernel}_c.pyi").read_text(encoding="utf-8")
    for name in names:
        assert f"def {name}(" in stub, f"_{kernel}_c.pyi lacks {name}"


def test_make_rebuilds_when_a_pyx_changes() -> None:
    """The Makefile's build stamp depends on every native/*.pyx."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "NATIVE_PYX := $(wildcard native/*.pyx)" in makefile
    assert "$(VENV)/.native: $(VENV)/.deps setup.py $(NATIVE_PYX)" in makefile
