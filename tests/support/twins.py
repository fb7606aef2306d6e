"""Every ``hotpath`` twin pair, loaded one way for every test.

A compiled twin that was not built is ``None`` (its tests are reported as
skipped, with the command that builds it); one that was built but does not
import is an error, never a skip.
"""

from __future__ import annotations

import glob
import importlib
import os

import pytest

import hotpath
from hotpath.status import FACADES

__all__ = ["FACADES", "NOT_BUILT", "compiled", "is_built", "params", "pure"]

PACKAGE_DIR = os.path.dirname(hotpath.__file__)
NOT_BUILT = "hotpath/_{}_c*.so is not built (python setup.py build_ext --inplace)"


def is_built(name: str) -> bool:
    return bool(glob.glob(os.path.join(PACKAGE_DIR, f"_{name}_c*.so")))


def pure(name: str):
    return importlib.import_module(f"hotpath._{name}_py")


def compiled(name: str):
    """The compiled twin of ``name``, or None when it was not built."""
    try:
        return importlib.import_module(f"hotpath._{name}_c")
    except ImportError:
        if is_built(name):
            raise
        return None


def params(name: str) -> list:
    """``pytest.param``\\ s for both twins of ``name``, ids "py" and "c"."""
    compiled_twin = compiled(name)
    return [
        pytest.param(pure(name), id="py"),
        pytest.param(compiled_twin, id="c", marks=pytest.mark.skipif(
            compiled_twin is None, reason=NOT_BUILT.format(name))),
    ]

