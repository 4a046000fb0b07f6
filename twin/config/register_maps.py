"""The Modbus register maps (register_maps/*.toml) -> ``RegisterMaps``.

``parse_register_maps`` takes the two texts, ``load_register_maps`` reads the files shipped
in the package.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

from pydantic import (
    Field,
)

from twin.config.messages import validate
from twin.config.schema import Model
from twin.errors import ConfigError
from twin.exporters.modbus_map import (
    TYPE_SIZE,
    VALUE_KEYS,
    WRITABLE_KEYS,
    CellBlock,
    NativeMap,
    Register,
    RegisterGroup,
    RegisterMaps,
    RegType,
    SunSpecMap,
    SunSpecModel,
    unit_layout,
)

# ---------------------------------------------------------------------------------------------
# The Modbus register maps (register_maps/*.toml).
# ---------------------------------------------------------------------------------------------


class _RegisterModel(Model):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    type: RegType
    address: int | None = Field(default=None, ge=0, le=65535)
    offset: int | None = Field(default=None, ge=0, le=255)
    size: int | None = Field(default=None, ge=1, le=125)
    scale: float = Field(default=1.0, gt=0.0)
    unit: str = ""
    access: Literal["R", "RW"] = "R"
    value: str | None = None
    description: str = ""
    label: str = ""
    sf: str | None = None
    sf_value: int | None = Field(default=None, ge=-10, le=10)


class _GroupModel(Model):
    title: str
    registers: list[_RegisterModel]


class _CellsModel(Model):
    title: str
    address: int = Field(ge=0, le=65535)
    stride: int = Field(ge=1, le=64)
    count: int = Field(ge=1, le=255)
    registers: list[_RegisterModel]


class _MapHeadModel(Model):
    name: str
    title: str
    version: int = 1
    base: int | None = Field(default=None, ge=0, le=65535)


class _NativeFileModel(Model):
    map: _MapHeadModel
    group: list[_GroupModel]
    cells: _CellsModel


class _SunSpecGroupModel(Model):
    name: str
    count: Literal["cell_count"]
    points: list[_RegisterModel]


class _SunSpecModelModel(Model):
    id: int = Field(ge=1, le=65534)
    name: str
    pack_only: bool = False
    points: list[_RegisterModel]
    group: _SunSpecGroupModel | None = None


class _SunSpecFileModel(Model):
    map: _MapHeadModel
    model: list[_SunSpecModelModel]


def _register(model: _RegisterModel, where: str, *, in_block: bool = False) -> Register:
    size = model.size if model.size is not None else TYPE_SIZE.get(model.type)
    if size is None:
        raise ConfigError(f"{where}.size: missing (a {model.type.value} needs its size)")
    if model.type in TYPE_SIZE and size != TYPE_SIZE[model.type]:
        raise ConfigError(f"{where}.size: {size} does not fit type {model.type.value}")
    # Native registers name their address, per-cell ones their offset in the block; SunSpec
    # points have neither (their place follows from the chain).
    position = model.offset if in_block else model.address
    if model.value is not None and model.value not in VALUE_KEYS:
        raise ConfigError(f"{where}.value: {model.value!r} is not a value the twin knows")
    writable = model.access == "RW"
    if writable and model.value not in WRITABLE_KEYS:
        raise ConfigError(f"{where}.access: {model.value!r} cannot be written")
    return Register(
        name=model.name,
        type=model.type,
        size=size,
        address=position or 0,
        scale=model.scale,
        unit=model.unit,
        writable=writable,
        value=model.value,
        description=model.description or model.label,
        sf=model.sf,
        sf_value=model.sf_value,
    )


def load_register_maps() -> RegisterMaps:
    """The maps shipped in ``twin.register_maps``, validated (a ConfigError names the fault)."""
    files = resources.files("twin.register_maps")
    native_text = files.joinpath("native.toml").read_text(encoding="utf-8")
    sunspec_text = files.joinpath("sunspec.toml").read_text(encoding="utf-8")
    return parse_register_maps(native_text, sunspec_text)


def parse_register_maps(native_text: str, sunspec_text: str) -> RegisterMaps:
    """Both maps from their TOML texts."""
    native = validate(_NativeFileModel, native_text, "register_maps/native.toml")
    sunspec = validate(_SunSpecFileModel, sunspec_text, "register_maps/sunspec.toml")
    groups = tuple(
        RegisterGroup(
            g.title,
            tuple(
                _register(r, f"register_maps/native.toml: group[{i}].registers[{j}]")
                for j, r in enumerate(g.registers)
            ),
        )
        for i, g in enumerate(native.group)
    )
    for i, g in enumerate(native.group):
        for j, r in enumerate(g.registers):
            if r.address is None:
                raise ConfigError(
                    f"register_maps/native.toml: group[{i}].registers[{j}].address: missing"
                )
    c = native.cells
    cell_regs = tuple(
        _register(r, f"register_maps/native.toml: cells.registers[{j}]", in_block=True)
        for j, r in enumerate(c.registers)
    )
    if sum(r.size for r in cell_regs) > c.stride:
        raise ConfigError("register_maps/native.toml: cells: the registers exceed the stride")
    native_map = NativeMap(
        native.map.title,
        native.map.version,
        groups,
        CellBlock(c.title, c.address, c.stride, c.count, cell_regs),
    )
    models = []
    for i, m in enumerate(sunspec.model):
        where = f"register_maps/sunspec.toml: model[{i}]"
        points = tuple(_register(p, f"{where}.points[{j}]") for j, p in enumerate(m.points))
        group = (
            tuple(_register(p, f"{where}.group.points[{j}]") for j, p in enumerate(m.group.points))
            if m.group is not None
            else ()
        )
        names = {p.name for p in points if p.type is RegType.SUNSSF}
        for p in (*points, *group):
            if p.sf is not None and p.sf not in names:
                raise ConfigError(f"{where}: {p.name}.sf names no scale factor point {p.sf!r}")
        models.append(
            SunSpecModel(m.id, m.name, points, group, m.group.name if m.group else "", m.pack_only)
        )
    base = sunspec.map.base if sunspec.map.base is not None else 40000
    maps = RegisterMaps(native_map, SunSpecMap(sunspec.map.title, base, tuple(models)))
    try:
        unit_layout(maps, native_map.cells.count, fleet=False)
    except ValueError as exc:
        raise ConfigError(f"register_maps: {exc}") from exc
    return maps
