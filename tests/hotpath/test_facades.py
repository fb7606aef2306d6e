"""Every ``hotpath`` facade loads its compiled twin whenever it is built and allowed.

One test for all twin pairs (``hotpath.status.FACADES``): what a facade
exports from its twins must come from ``_x_c`` when it was built and
extensions are allowed, from ``_x_py`` otherwise; the error each pair raises
is one class shared by both twins; ``hotpath.status`` reports what is loaded.
"""

import importlib
import os
import subprocess
import sys

import pytest

from hotpath import _flags, status
from tests.support import twins


def facade(name):
    return importlib.import_module(f"hotpath.{name}")


def twinned(name):
    """The names the facade exports from its twins: defined by both, when both exist."""
    pure, compiled = twins.pure(name), twins.compiled(name)
    return [export for export in facade(name).__all__ if hasattr(pure, export)
            and (compiled is None or hasattr(compiled, export))]


@pytest.fixture(params=twins.FACADES)
def name(request):
    return request.param


def test_every_facade_has_a_pure_and_a_compiled_twin(name):
    assert twinned(name), f"hotpath.{name} exports nothing from its twins"
    assert os.path.exists(os.path.join(twins.PACKAGE_DIR, f"_{name}_c.pyx"))


def test_the_facade_exports_the_loaded_twin(name):
    module = facade(name)
    compiled = twins.compiled(name)
    use_compiled = compiled is not None and not _flags.NO_EXTENSIONS
    assert module.COMPILED is use_compiled
    loaded = compiled if use_compiled else twins.pure(name)
    for export in twinned(name):
        assert getattr(module, export) is getattr(loaded, export), export


def test_both_twins_raise_one_error_class(name):
    compiled = twins.compiled(name)
    if compiled is None:
        pytest.skip(twins.NOT_BUILT.format(name))
    pure = twins.pure(name)
    errors = [export for export in twinned(name)
              if isinstance(getattr(pure, export), type)
              and issubclass(getattr(pure, export), Exception)]
    assert errors, f"hotpath.{name} exports no error class"
    for error in errors:
        assert getattr(compiled, error) is getattr(pure, error)
        assert getattr(pure, error).__module__ == f"hotpath._{name}_errors"


def test_status_reports_the_loaded_twin(name):
    assert status.loaded()[name] is facade(name).COMPILED


@pytest.mark.parametrize(("switch", "allowed"), [
    pytest.param("1", False, id="disabled"),
    pytest.param("", True, id="allowed"),
])
def test_environment_switch_in_a_fresh_interpreter(name, switch, allowed):
    # Each suite run sets the switch one way; this checks both, every run.
    expected = allowed and twins.is_built(name)
    export = twinned(name)[-1]
    code = (f"import hotpath.{name} as f; "
            f"print(f.COMPILED, getattr(f, {export!r}).__module__)")
    env = {**os.environ, "PEREGRINE_NO_EXTENSIONS": switch}
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(twins.PACKAGE_DIR),
                            env=env, capture_output=True, text=True, check=True)
    module = f"hotpath._{name}_c" if expected else f"hotpath._{name}_py"
    assert result.stdout.split() == [str(expected), module]
