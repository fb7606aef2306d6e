"""Which implementation of the hot path to load."""

import os
import platform

#: True when the compiled twins must not be used (forced, or not CPython).
NO_EXTENSIONS = (
    os.environ.get("PEREGRINE_NO_EXTENSIONS", "") not in ("", "0")
    or platform.python_implementation() != "CPython"
)
