"""Load the JWT twins for the tests: the compiled one only when it was built."""

import glob
import os

import hotpath


def _load_compiled_twin():
    try:
        from hotpath import _jwt_c
    except ImportError:
        # A built but unimportable module is a failure, never a skip.
        if glob.glob(os.path.join(os.path.dirname(hotpath.__file__), "_jwt_c*.so")):
            raise
        return None
    return _jwt_c


#: The compiled twin, or None when ``hotpath/_jwt_c*.so`` was not built.
jwt_c = _load_compiled_twin()
NOT_BUILT = "hotpath/_jwt_c*.so is not built (python setup.py build_ext --inplace)"
