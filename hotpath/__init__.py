"""Peregrine's critical path: CPU-only code with a compiled and a pure twin.

Every module here follows one pattern: ``_x_py.py`` is the reference
implementation, ``_x_c.pyx`` the compiled twin with the same API,
``_x_errors.py`` the exception both twins raise, and the facade ``x.py``
loads the compiled one unless ``PEREGRINE_NO_EXTENSIONS`` is set or it was
not built. Application code imports facades only; ``hotpath.status.FACADES``
lists them, and one test checks them all.
"""
