"""msgspec's validation messages, said in words a client can act on.

msgspec reports what a value failed in its own notation ("Expected `str`
matching regex '\\A...\\Z'", "Expected `int` >= 1"). A client should read
"must be a UUID" or "must be at least 1" instead, and never a regex. The
words for each pattern are declared with the pattern itself
(:func:`app.schemas.text.worded`), so the two cannot drift; the allowed
values of a ``Literal`` are read from the schema the input was decoded into.
"""

from __future__ import annotations

import re

import msgspec.inspect as mi

from app.schemas.text import PATTERN_WORDS

#: What a pattern without declared words is reported as (the regex is never shown).
UNDESCRIBED_PATTERN = "is not in the expected format"

# msgspec's names of JSON types, as a phrase after "must be".
_TYPE_WORDS = {
    "int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
    "object": "an object", "array": "an array", "null": "null", "datetime": "an RFC 3339 "
    "date-time", "date": "an RFC 3339 date", "uuid": "a UUID", "decimal": "a decimal number",
}
# ... and after "not": what was sent (a float only fails where it is fractional).
_GOT_WORDS = {**_TYPE_WORDS, "float": "a fractional number", "bool": "a boolean"}
_BOUND_WORDS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}
_UNIT = {"str": "character", "array": "item", "object": "entry"}

_WRONG_TYPE = re.compile(r"Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`")
_PATTERN = re.compile(r"Expected `str` matching regex (?P<pattern>'.*'|\".*\")", re.S)
_LENGTH = re.compile(r"Expected `(?P<type>\w+)` of length (?P<op>[<>]=?) (?P<n>\d+)")
_BOUND = re.compile(r"Expected `(?:int|float)` (?P<op>[<>]=?) (?P<n>-?[0-9.e+-]+)")
_MULTIPLE = re.compile(r"Expected `(?:int|float)` that's a multiple of (?P<n>[0-9.e+-]+)")
_ENUM = re.compile(r"Invalid enum value (?P<value>.+)")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `[^`]*`")
_MISSING_FIELD = re.compile(r"Object missing required field `[^`]*`")
# repr() of each described pattern, as msgspec quotes it in its message.
_WORDS_BY_REPR: dict[str, str] = {}


def in_words(message: str, schema: type | None = None, path: str = "$") -> str:
    """msgspec's ``message`` (the part before " - at") for the value at ``path``, in words.

    ``schema`` is the type the input was decoded into, when known: it names
    the allowed values of an enum. A message of no known shape (one raised
    by a ``__post_init__``, say) is returned as it is.
    """
    if match := _PATTERN.fullmatch(message):
        return _pattern_words(match.group("pattern"))
    if match := _WRONG_TYPE.fullmatch(message):
        expected = [_TYPE_WORDS.get(t, f"`{t}`") for t in match.group("expected").split(" | ")]
        if len(expected) > 1:
            expected = [", ".join(expected[:-1]), expected[-1]]
        got = match.group("got")
        return f"must be {' or '.join(expected)}, not {_GOT_WORDS.get(got, f'`{got}`')}"
    if match := _LENGTH.fullmatch(message):
        n = int(match.group("n"))
        unit = _UNIT.get(match.group("type"), "item") + ("" if n == 1 else "s")
        verb = "be" if match.group("type") == "str" else "have"
        return f"must {verb} {_BOUND_WORDS[match.group('op')]} {n} {unit}"
    if match := _BOUND.fullmatch(message):
        return f"must be {_BOUND_WORDS[match.group('op')]} {match.group('n')}"
    if match := _MULTIPLE.fullmatch(message):
        return f"must be a multiple of {match.group('n')}"
    if _UNKNOWN_FIELD.fullmatch(message):
        return "is not a field of this object"
    if _MISSING_FIELD.fullmatch(message):
        return "is required"
    if _ENUM.fullmatch(message):
        values = _literal_values(schema, path) if schema is not None else None
        if values:
            return "must be one of " + ", ".join(f'"{v}"' if isinstance(v, str) else str(v)
                                                 for v in values)
        return "is not one of the allowed values"
    return message


def _pattern_words(quoted: str) -> str:
    if len(_WORDS_BY_REPR) != len(PATTERN_WORDS):
        _WORDS_BY_REPR.clear()
        _WORDS_BY_REPR.update({repr(p): words for p, words in PATTERN_WORDS.items()})
    return _WORDS_BY_REPR.get(quoted, UNDESCRIBED_PATTERN)


_SEGMENT = re.compile(r"\.(?P<field>[^.\[]+)|\[(?P<index>\d+)\]")


def _literal_values(schema: type, path: str):
    """The ``Literal`` values allowed at ``path`` ("$.a[0].b") in ``schema``, or None."""
    try:
        node = mi.type_info(schema)
    except (TypeError, ValueError):
        return None
    for segment in _SEGMENT.finditer(path.removeprefix("$")):
        node = _step(node, segment.group("field"), segment.group("index") is not None)
        if node is None:
            return None
    literal = _find(node, mi.LiteralType)
    return literal.values if literal is not None else None


def _step(node, field: str | None, index: bool):
    if index:
        container = _find(node, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType))
        return container.item_type if container is not None else None
    struct = _find(node, mi.StructType)
    if struct is None:
        return None
    return next((f.type for f in struct.fields if f.encode_name == field), None)


def _find(node, kind):
    """``node`` if it is a ``kind``, else the first ``kind`` among its union's members."""
    if isinstance(node, kind):
        return node
    if isinstance(node, mi.UnionType):
        return next((t for t in node.types if isinstance(t, kind)), None)
    return None
