"""Verify HS256 access tokens with the compiled twin when it is built.

``verify`` comes from ``hotpath._jwt_c`` unless
``PEREGRINE_NO_EXTENSIONS`` is set or it was not built; then from the
reference ``hotpath._jwt_py``. ``COMPILED`` says which one is loaded.
"""

from typing import TYPE_CHECKING

from hotpath._flags import NO_EXTENSIONS
from hotpath._jwt_errors import InvalidTokenError

__all__ = ("COMPILED", "InvalidTokenError", "verify")

COMPILED = False
if TYPE_CHECKING or NO_EXTENSIONS:
    from hotpath._jwt_py import verify
else:
    try:
        from hotpath._jwt_c import verify
    except ImportError:  # not built: the pure twin behaves the same
        from hotpath._jwt_py import verify
    else:
        COMPILED = True
