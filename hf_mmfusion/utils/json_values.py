"""Values as strict JSON holds them."""

from __future__ import annotations

import math


def finite_or_none(value):
    """``value`` with every non-finite float (NaN, +-inf) replaced by ``None``, through dicts, lists and tuples:
    strict JSON has neither NaN nor Infinity, and Python would write both."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value
