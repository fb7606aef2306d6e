"""HTTP/1.1 glue for ``hotpath.worker``, compiled when the twin is built.

``RequestParser``, ``encode_response`` and ``http_date`` come from
``hotpath._http_c`` unless ``PEREGRINE_NO_EXTENSIONS`` is set or it was not
built; then from the reference ``hotpath._http_py``. ``COMPILED`` says which
one is loaded. Both twins raise ``hotpath._http_errors.HttpError``; the error
envelope (not on the hot path) always comes from ``hotpath._http_py``.
"""

from typing import TYPE_CHECKING

from hotpath._flags import NO_EXTENSIONS
from hotpath._http_errors import HttpError
from hotpath._http_py import error_response, new_request_id, new_traceparent

__all__ = (
    "COMPILED",
    "HttpError",
    "RequestParser",
    "encode_response",
    "error_response",
    "http_date",
    "new_request_id",
    "new_traceparent",
)

COMPILED = False
if TYPE_CHECKING or NO_EXTENSIONS:
    from hotpath._http_py import RequestParser, encode_response, http_date
else:
    try:
        from hotpath._http_c import RequestParser, encode_response, http_date
    except ImportError:  # not built: the pure twin behaves the same
        from hotpath._http_py import RequestParser, encode_response, http_date
    else:
        COMPILED = True
