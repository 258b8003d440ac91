"""Build of the Cython kernels in native/ (each `_x_c.pyx` has a pure-Python twin `_x_py.py`).

`make setup` runs `python setup.py build_ext --inplace`; with no kernel yet it builds nothing.
"""

from pathlib import Path

from setuptools import setup

pyx = sorted(str(p) for p in Path("native").glob("*.pyx"))
ext_modules = []
if pyx:
    from Cython.Build import cythonize

    ext_modules = cythonize(pyx, language_level=3, compiler_directives={"binding": False})

setup(ext_modules=ext_modules)
