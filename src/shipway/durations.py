"""Durations as people type them: ``500ms``, ``30s``, ``2m``, ``1.5h``, ``7d``, ``2w``.

One reader for every command and file that takes a duration (monitoring windows, rollout
intervals, pipeline timeouts), so they all accept the same spellings.
"""

from __future__ import annotations

import re
from datetime import timedelta

from shipway.errors import InvalidInputError

__all__ = ["parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)\s*$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """``text`` as a positive duration, or InvalidInputError naming ``what`` could not be read."""
    match = _DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise InvalidInputError(
            f"Cannot read the {what} '{text}'.",
            "Use a positive number and a unit: 500ms, 30s, 2m, 1h, 7d or 2w.",
        )
    return timedelta(seconds=float(match[1]) * _SECONDS[match[2]])
