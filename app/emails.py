"""The one normalisation of email addresses.

Uniqueness, lookups and rate-limit keys all use :func:`normalize`, computed
here in Python and stored in ``users.email_key``. Postgres' ``lower()``
depends on the database's locale (a C-locale database leaves ``É`` alone, a
Turkish one maps ``I`` to ``ı``), so it decides nothing.
"""

from __future__ import annotations

import unicodedata


def normalize(email: str) -> str:
    """NFC, then Unicode lower case: the key two spellings of one address share."""
    return unicodedata.normalize("NFC", email).lower()
