"""Response and request shapes shared across areas (msgspec Structs).

Inputs forbid unknown fields; outputs list exactly what clients may see.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Health(msgspec.Struct):
    status: Literal["ok"] = "ok"


class Readiness(msgspec.Struct):
    status: Literal["ok"]
    database: Literal["ok"]
    cache: Literal["ok", "degraded"]
