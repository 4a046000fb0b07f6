"""The one-line error messages: a pydantic error -> ``<file>: <field>: <problem> (allowed ...)``."""

from __future__ import annotations

import re
import tomllib
import types
import typing
from enum import Enum
from typing import Any, Literal

import annotated_types
from pydantic import (
    BaseModel,
    ValidationError,
)

from twin.config.schema import ConfigModel
from twin.errors import ConfigError

# One line per pydantic error: field, bad value, allowed range.
# ---------------------------------------------------------------------------------------------


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _field_info(loc: tuple[int | str, ...], root: type[BaseModel]) -> Any:
    """The pydantic FieldInfo at ``loc`` in ``root``, or None."""
    model: type[BaseModel] | None = root
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        info = model.model_fields[part]
        model = _inner_model(info.annotation)
    return info


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _bounds_text(lo: str | None, hi: str | None) -> str:
    if hi is None:
        return f"more than {lo[1:]}" if lo and lo.startswith(">") else f"at least {lo}"
    if lo is None:
        return f"less than {hi[1:]}" if hi.startswith("<") else f"at most {hi}"
    return f"{lo}..{hi}"


def _allowed(
    loc: tuple[int | str, ...], root: type[BaseModel], ctx: dict[str, Any] | None = None
) -> str | None:
    """The allowed range or values of the field at ``loc`` (or from the error's ``ctx``)."""
    lo = hi = None
    info = _field_info(loc, root)
    constraints: list[Any] = list(info.metadata) if info is not None else []
    for meta in constraints:
        if isinstance(meta, annotated_types.Ge):
            lo = _num(meta.ge)
        elif isinstance(meta, annotated_types.Gt):
            lo = f">{_num(meta.gt)}"
        elif isinstance(meta, annotated_types.Le):
            hi = _num(meta.le)
        elif isinstance(meta, annotated_types.Lt):
            hi = f"<{_num(meta.lt)}"
    if lo is None and hi is None and ctx:
        # A value nested below the field (a curve point): the error carries its own bound.
        lo = _num(ctx["ge"]) if "ge" in ctx else (f">{_num(ctx['gt'])}" if "gt" in ctx else None)
        hi = _num(ctx["le"]) if "le" in ctx else (f"<{_num(ctx['lt'])}" if "lt" in ctx else None)
    if lo is not None or hi is not None:
        return _bounds_text(lo, hi)
    if info is None:
        return None
    choices = _choices(info.annotation)
    return ", ".join(choices) if choices else None


def _num(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _choices(annotation: Any) -> list[str]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType):
        out: list[str] = []
        for arg in typing.get_args(annotation):
            out.extend(_choices(arg))
        return out
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(m.value) for m in annotation]
    return []


def describe(error: Any, root: type[BaseModel] = ConfigModel) -> str:
    """One pydantic error as ``<field>: <problem> (allowed ...)``."""
    loc = tuple(error["loc"])
    # Drop pydantic's inner markers (tuple positions, union branches) from the location text.
    field_loc = tuple(p for p in loc if not (isinstance(p, str) and not re.match(r"^\w+$", p)))
    where = _location(field_loc) or "file"
    kind = error["type"]
    given = error.get("input")
    allowed = _allowed(field_loc, root, error.get("ctx"))
    if kind == "extra_forbidden":
        parent = _field_info(field_loc[:-1], root) if len(field_loc) > 1 else None
        model = _inner_model(parent.annotation) if parent is not None else root
        names = ", ".join(model.model_fields) if model is not None else ""
        return f"{where}: unknown field (allowed: {names})"
    if kind == "missing":
        return f"{where}: missing (required)"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{where}: {given!r} is out of range (allowed {allowed})"
    if kind in ("literal_error", "enum"):
        return f"{where}: {given!r} is not allowed (allowed: {allowed})"
    if kind == "string_pattern_mismatch":
        return f"{where}: {given!r} does not match {error['ctx']['pattern']}"
    if kind == "value_error" and "error" in error.get("ctx", {}):
        return f"{where}: {error['ctx']['error']}"
    if kind == "finite_number":
        return f"{where}: {given!r} is not a finite number"
    if kind == "too_long" and isinstance(given, list | dict | str):
        most = error.get("ctx", {}).get("max_length")
        return f"{where}: {len(given)} given, at most {most} allowed"
    if kind == "too_short" and isinstance(given, list | dict | str):
        least = error.get("ctx", {}).get("min_length")
        return f"{where}: {len(given)} given, at least {least} needed"
    if kind == "string_type" and isinstance(given, int | float):
        return f'{where}: {given!r} must be text in quotes ("{given}")'
    hint = f" (allowed {allowed})" if allowed else ""
    return f"{where}: {given!r}: {error['msg']}{hint}"


# ---------------------------------------------------------------------------------------------
# Scenario files (``twin simulate``): the BMS as in a [[pack]], plus the physical pack, the

_M = typing.TypeVar("_M", bound=BaseModel)


def validate(schema: type[_M], text: str, source: str) -> _M:
    """Parse TOML ``text`` and validate it against ``schema``; errors are one line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {describe(errors[0], schema)}{more}") from exc
