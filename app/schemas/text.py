"""String constraints shared by every input schema.

Two traps this module exists to avoid:

* msgspec checks ``pattern=`` with ``re.search``, and in Python ``$`` also
  matches *before* a final ``"\\n"``: ``^[A-Z]{2}$`` accepts ``"US\\n"``.
  Every pattern is therefore anchored with ``\\A`` and ``\\Z``, which match
  only at the very ends of the string (see :func:`anchored`). The OpenAPI
  generator writes them as ``^``/``$``, which mean the same in the
  ECMA-262 regexes JSON Schema uses.
* Postgres ``text`` and ``jsonb`` cannot hold U+0000. A NUL that reaches
  the database is a driver or server error (a 500); free text is refused
  with a 422 here instead (see :data:`NUL_FREE` and :func:`Text`).

Character classes spell ASCII ranges (``[0-9]``, never ``\\d``): in ``str``
patterns ``\\d`` also matches other scripts' digits, which Postgres does not
take as numbers.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


def anchored(body: str) -> str:
    """``body`` as a pattern that must match the whole string, newline tricks included."""
    return rf"\A(?:{body})\Z"


#: Any text without U+0000: what a Postgres ``text`` or ``jsonb`` string can hold.
NUL_FREE = r"\A[^\x00]*\Z"

#: What a client is told when a field holds a NUL (errors.py maps NUL_FREE to it).
NUL_MESSAGE = "text must not contain NUL (\\u0000) characters"

#: Each pattern with what a client is told when a value fails it: words, never
#: the regex (see app/schemas/messages.py). Filled by :func:`worded`.
PATTERN_WORDS: dict[str, str] = {NUL_FREE: "must not contain NUL (\\u0000) characters"}


def worded(body: str, words: str) -> str:
    """``anchored(body)``, declared with the ``words`` a failing value is reported with.

    ``words`` completes "<field> ...", e.g. "must be a UUID".
    """
    pattern = anchored(body)
    PATTERN_WORDS[pattern] = words
    return pattern


def Text(min_length: int | None = None, max_length: int | None = None, **meta):  # noqa: N802
    """A free-text ``str`` field: bounded, and never holding a NUL."""
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length,
                                       pattern=NUL_FREE, **meta)]

