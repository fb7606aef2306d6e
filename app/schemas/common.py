"""Building blocks every area's schemas are made of.

One definition each of what used to be declared per area: the base of
request bodies, the page size and cursor of list queries, and the UUID
patterns. Text rules (anchoring, NUL) live in :mod:`app.schemas.text`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from app.schemas.text import Text, worded


class Input(msgspec.Struct, forbid_unknown_fields=True):
    """Base of request bodies and query strings: unknown fields are a 422.

    msgspec inherits ``forbid_unknown_fields`` but applies ``kw_only`` only to
    the class that states it, so every subclass says ``kw_only=True`` itself.
    """


#: How many items a list answers with.
PageLimit = Annotated[int, msgspec.Meta(ge=1, le=100)]
DEFAULT_PAGE_LIMIT = 20

#: A pagination cursor as a client sends it back (its content is checked on decoding).
Cursor = Text(max_length=512)


class PageQuery(Input, kw_only=True):
    """The query of a list that takes nothing but a page."""

    limit: PageLimit = DEFAULT_PAGE_LIMIT
    cursor: Cursor | None = None


_UUID_SHAPE = "{h}{{8}}-{h}{{4}}-{h}{{4}}-{h}{{4}}-{h}{{12}}"

#: A UUID in canonical (lower-case) text form: what Peregrine hands out.
UUID_PATTERN = worded(_UUID_SHAPE.format(h="[0-9a-f]"), "must be a UUID in lower case")

#: A UUID as a client may send it: any case (the contract), lower-cased on decoding.
ANY_CASE_UUID_PATTERN = worded(_UUID_SHAPE.format(h="[0-9a-fA-F]"), "must be a UUID")
