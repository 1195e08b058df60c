"""Sections of `shipway.yaml`: the file found, read with its node tree, and errors that name
the file, the line and the field (`shipway.yaml, line 18: pipeline.stages[3].uses: ...`), so
a user never has to guess which entry is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shipway.errors import InvalidInputError, NotFoundError

__all__ = [
    "SPEC_FILE",
    "field_error",
    "first_error",
    "message",
    "read_yaml",
    "spec_file",
    "validation_error",
]

SPEC_FILE = "shipway.yaml"


def spec_file(directory: Path | None, hint: str) -> Path:
    """`shipway.yaml` in ``directory`` (the current one by default), or NotFoundError."""
    directory = (directory or Path.cwd()).resolve()
    path = directory / SPEC_FILE
    if not path.is_file():
        raise NotFoundError(f"No {SPEC_FILE} in {directory}.", hint)
    return path


def read_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data; malformed YAML is an
    InvalidInputError naming the line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInputError(f"{path}{where}: not valid YAML ({problem}).") from None


def field_error(path: Path, root: yaml.Node | None, loc: Sequence[str | int], message: str,
                hint: str | None = None) -> InvalidInputError:  # fmt: skip
    """The error for the field ``loc``: file, line and dotted field name first."""
    return InvalidInputError(f"{path}, line {_line(root, loc)}: {_dotted(loc)}: {message}.", hint)


def validation_error(
    path: Path, root: yaml.Node | None, section: str, exc: ValidationError, hint: str | None
) -> InvalidInputError:
    error = first_error(exc)
    return field_error(path, root, (section, *error["loc"]), message(error), hint)


def first_error(exc: ValidationError) -> Any:
    """The error to report: a misspelt field before the required one it was meant to be."""
    return sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]


def message(error: Any) -> str:
    msg = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown field (check its spelling)"
    if error["type"] == "missing":
        return "this field is required"
    return msg.removeprefix("Value error, ")


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line(root: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The line of the field `loc` names; for a missing field, the line of its parent's key."""
    node, line = root, 1
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    nxt, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if part < len(node.value) else None
            line = nxt.start_mark.line + 1 if nxt is not None else line
        if nxt is None:
            break
        node = nxt
    return line
