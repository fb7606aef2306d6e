"""Report which twin of each hot-path module is loaded.

``python -c "import hotpath.status as s; print(s.describe())"`` prints one line
per facade; ``make build`` runs it so the build output says what was compiled.
"""

import importlib

#: Every facade in the package; each exposes ``COMPILED``.
FACADES = ("jwt", "http")


def loaded():
    """Return ``{facade: True|False|None}``; None means not importable."""
    result: dict[str, bool | None] = {}
    for name in FACADES:
        try:
            module = importlib.import_module(f"hotpath.{name}")
        except ImportError:
            result[name] = None
        else:
            result[name] = bool(module.COMPILED)
    return result


def describe():
    parts = []
    for name, compiled in loaded().items():
        if compiled is not None:
            parts.append(f"{name}={'compiled' if compiled else 'pure-python'}")
    return "hotpath: " + (", ".join(parts) or "no modules")
