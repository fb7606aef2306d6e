"""``hotpath.jwt`` loads the compiled twin whenever it is built and allowed."""

import glob
import os
import subprocess
import sys

import pytest

import hotpath
import hotpath.jwt
from hotpath import _flags, _jwt_py

PACKAGE_DIR = os.path.dirname(hotpath.__file__)
BUILT = bool(glob.glob(os.path.join(PACKAGE_DIR, "_jwt_c*.so")))


@pytest.mark.skipif(not BUILT, reason="hotpath/_jwt_c*.so is not built")
@pytest.mark.skipif(_flags.NO_EXTENSIONS, reason="PEREGRINE_NO_EXTENSIONS is set")
def test_compiled_twin_is_loaded_when_built():
    from hotpath import _jwt_c

    assert hotpath.jwt.COMPILED is True
    assert hotpath.jwt.verify is _jwt_c.verify


@pytest.mark.skipif(not _flags.NO_EXTENSIONS, reason="extensions are allowed")
def test_pure_twin_is_loaded_when_extensions_are_disabled():
    assert hotpath.jwt.COMPILED is False
    assert hotpath.jwt.verify is _jwt_py.verify


def test_status_reports_the_loaded_twin():
    from hotpath import status

    assert status.loaded()["jwt"] is hotpath.jwt.COMPILED


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        pytest.param("1", False, id="disabled"),
        pytest.param("", BUILT, id="allowed"),
    ],
)
def test_environment_switch_in_a_fresh_interpreter(switch, expected):
    # Each suite run sets the switch one way; this checks both, every run.
    code = "import hotpath.jwt as j; print(j.COMPILED, j.verify.__module__)"
    env = {**os.environ, "PEREGRINE_NO_EXTENSIONS": switch}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.path.dirname(PACKAGE_DIR),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module = "hotpath._jwt_c" if expected else "hotpath._jwt_py"
    assert result.stdout.split() == [str(expected), module]
