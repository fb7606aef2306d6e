"""Which "schema-valid request rejected" (ST202) findings are the contract's rules.

schemathesis generates data that satisfies the OpenAPI schema, but some
rules no JSON Schema can state: they depend on what is stored (an id that
names nothing, products in two currencies) or on a setting. A rejection
for one of those, with the contract's status and message, is the service
keeping its contract; anything else is a finding. Kept apart from the
harness (which monkey-patches on import) so the unit stage can test it.
"""

from __future__ import annotations

import json
import re


def by_contract(check: str, status: int, body: bytes) -> bool:
    if check != "positive_data_acceptance":
        return False
    if status == 412:
        return True  # If-Match with a random tag: the precondition the header exists for
    if status not in (400, 422):
        return False
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if status == 400:
        # A well-formed email link token that was never issued: the contract's
        # 400 for a used, expired or unknown token (a schema cannot know which exist).
        return error.get("message") == "the token is invalid, used or expired"
    fields = [d.get("field") for d in error.get("details") or []]
    messages = " ".join(d.get("message", "") for d in error.get("details") or [])
    # Referential and cross-field rules JSON Schema cannot state: a cursor the
    # server never issued, an id or slug that names nothing, one product twice,
    # products that exist but are priced in different currencies, or whose
    # stored prices sum beyond what an order's total can hold.
    return (fields == ["$.cursor"]
            or (set(fields) == {"$.items"} and "unknown product" in messages)
            or (set(fields) == {"$.items"} and "mixed currencies" in messages)
            or (set(fields) == {"$.items"} and "total too large" in messages)
            or (fields == ["$.category"] and "unknown category" in messages)
            or (fields == ["Idempotency-Key"] and "reused with another body" in messages)
            or (fields == ["$.url"] and error.get("message", "").startswith(
                "this URL may not receive webhooks"))
            or (len(fields) == 1 and re.fullmatch(r"\$\.items\[\d+\]\.product_id", fields[0] or "")
                and "duplicate product" in messages))
