"""Pages of a list endpoint: `offset` and `limit`, over a stable order.

Every list endpoint sorts by something unique last (an id, a sequence number, a name), so the
page at `offset` is the same whoever asks and nothing falls between two pages. A client reads
a list longer than one page (1000 entries) by asking again at `offset + len(page)` until a page
comes back short; an entry added meanwhile at the head shifts the rest by one, which the client
sees as one repeat (it drops repeats), never as a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from shipway.server.endpoints import Call, Param

MAX_LIMIT = 1000
"""The most entries one page holds."""

OFFSET = Param("offset", "Skip this many first (to page through the list).", int, 0, 0)


def limit_param(description: str, default: int | None) -> Param:
    """`limit`, up to `MAX_LIMIT`; a `None` default means every entry from `offset` on."""
    return Param("limit", description, int, default, 1, MAX_LIMIT)


T = TypeVar("T")


def page(items: Sequence[T], call: Call) -> list[T]:
    """The page of an already ordered list (for lists that are built whole anyway)."""
    start = call.query["offset"]
    limit = call.query["limit"]
    return list(items[start : None if limit is None else start + limit])
