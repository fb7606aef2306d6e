"""Liveness and readiness shapes."""

from __future__ import annotations

from typing import Literal

import msgspec


class Health(msgspec.Struct):
    status: Literal["ok"] = "ok"


class Readiness(msgspec.Struct):
    status: Literal["ok"]
    database: Literal["ok"]
    cache: Literal["ok", "degraded"]
