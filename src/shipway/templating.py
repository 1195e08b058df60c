"""One way to render HTML reports: Jinja2 with autoescaping and strict undefined values, so a
value from the data is always text (never markup) and a missing one is an error, not a blank."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

__all__ = ["html_environment"]


def html_environment(package: str, folder: str = "templates") -> Environment:
    """An environment loading templates from ``package``'s ``folder``."""
    return Environment(
        loader=PackageLoader(package, folder),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
