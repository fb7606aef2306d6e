"""Build Peregrine, compiling every ``hotpath/*.pyx`` when it can.

The compiled modules are optional: each has a pure-Python twin with the same
behaviour, so a machine without Cython or a C compiler still gets a working
install. ``PEREGRINE_NO_EXTENSIONS=1`` forces the pure-Python build.
"""

import glob
import os
import platform
import sys

from setuptools import Extension, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

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
        options.setdefault("extra_compile_args", ["-O3"])
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


def requirements():
    with open(os.path.join(HERE, "requirements.txt")) as f:
        return [
            line.split("#", 1)[0].strip()
            for line in f
            if line.split("#", 1)[0].strip()
        ]


setup(
    name="peregrine",
    version="0.1.0",
    description="A lean, high-throughput JSON API: users, auth, catalog, orders.",
    python_requires=">=3.10",
    packages=find_packages(include=["app", "app.*", "hotpath", "hotpath.*"]),
    package_data={"app": ["migrations/*.sql", "static/*"]},
    install_requires=requirements(),
    ext_modules=extensions(),
    entry_points={"console_scripts": ["peregrine = app.cli:main"]},
    zip_safe=False,
)
