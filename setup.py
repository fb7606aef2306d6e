"""Build Peregrine's compiled twins: every ``hotpath/*.pyx`` when it can.

The project's metadata, dependencies and console script are declared in
pyproject.toml; this file only adds the extension modules, which need logic.

The compiled modules are optional: each has a pure-Python twin with the same
behaviour, so a machine without Cython or a C compiler still gets a working
install. ``PEREGRINE_NO_EXTENSIONS=1`` forces the pure-Python build.
"""

import glob
import os
import platform
import sys

from setuptools import Extension, setup

# Extra compile/link options for a compiled module, keyed by module name.
EXTENSION_OPTIONS = {
    # HMAC-SHA256 and CRYPTO_memcmp from OpenSSL (Debian: libssl-dev).
    "_jwt_c": {"libraries": ["crypto"]},
}


def _wants_extensions():
    if os.environ.get("PEREGRINE_NO_EXTENSIONS", "") not in ("", "0"):
        print("PEREGRINE_NO_EXTENSIONS is set: pure-Python build", file=sys.stderr)
        return False
    if platform.python_implementation() != "CPython":
        print("not CPython: pure-Python build", file=sys.stderr)
        return False
    return True


def _optimization():
    # PEREGRINE_QUICK_BUILD=1: -O0, half the compile time, for checks that
    # only need the compiled modules to exist (tests/integration/test_wheel.py);
    # never for a build that serves.
    return "-O0" if os.environ.get("PEREGRINE_QUICK_BUILD", "") not in ("", "0") else "-O3"


def extensions():
    if not _wants_extensions():
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("Cython is not installed: pure-Python build", file=sys.stderr)
        return []
    modules = []
    for path in sorted(glob.glob(os.path.join("hotpath", "*.pyx"))):
        name = os.path.splitext(os.path.basename(path))[0]
        options = dict(EXTENSION_OPTIONS.get(name, {}))
        options.setdefault("extra_compile_args", [_optimization()])
        # NOTE: optional=True lets the build go on (pure Python) when one
        # module fails to compile; the facade then loads the twin.
        modules.append(Extension(f"hotpath.{name}", [path], optional=True, **options))
    return cythonize(
        modules,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
        annotate=os.environ.get("PEREGRINE_CYTHON_ANNOTATE") == "1",
        quiet=True,
    )


setup(ext_modules=extensions())
