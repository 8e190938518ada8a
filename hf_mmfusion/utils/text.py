"""Short lists inside error messages."""

from __future__ import annotations

from collections.abc import Sequence


def listed(items: Sequence[str], limit: int = 5, separator: str = ", ") -> str:
    """The first ``limit`` of ``items`` joined by ``separator``, with how many more there are: a message
    names what is wrong without printing thousands of names."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return separator.join(items[:limit]) + more
