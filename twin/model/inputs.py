r"""What the BMS logic reads each cycle: exactly what a real 123\SmartBMS UART frame carries.

The logic needs nothing a real frame lacks, so the same ``BmsLogic`` can run inside the emulated
End board and shadow a real BMS. The settings the frame lacks (Tmin, Tmax, restart %) come from
``BmsSettings``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Final

from twin.model.values import Value


class BmsInputs(Value):
    """One cycle's measurements of one pack, in physical units.

    ``None`` means "not available": a current whose sign byte is ``X`` (sensor absent), or a
    rotating cell slot that carried no cell. With ``comm_error`` set (chain error E, or the
    twin's own watchdog) the measurements may be stale or garbage; the logic ignores them.
    """

    FIELDS: ClassVar = (
        "pack_voltage_v",
        "current1_a",
        "current2_a",
        "battery_current_a",
        "min_cell_voltage_v",
        "min_cell_index",
        "max_cell_voltage_v",
        "max_cell_index",
        "min_temp_c",
        "min_temp_index",
        "max_temp_c",
        "max_temp_index",
        "cell_count",
        "cell_index",
        "cell_voltage_v",
        "cell_temp_c",
        "comm_error",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        pack_voltage_v: float,
        current1_a: float | None,
        current2_a: float | None,
        battery_current_a: float | None,
        min_cell_voltage_v: float,
        min_cell_index: int,
        max_cell_voltage_v: float,
        max_cell_index: int,
        min_temp_c: float,
        min_temp_index: int,
        max_temp_c: float,
        max_temp_index: int,
        cell_count: int,
        cell_index: int | None = None,
        cell_voltage_v: float | None = None,
        cell_temp_c: float | None = None,
        comm_error: bool = False,
    ) -> None:
        self.pack_voltage_v: Final = pack_voltage_v
        self.current1_a: Final = current1_a
        self.current2_a: Final = current2_a
        self.battery_current_a: Final = battery_current_a
        self.min_cell_voltage_v: Final = min_cell_voltage_v
        self.min_cell_index: Final = min_cell_index
        self.max_cell_voltage_v: Final = max_cell_voltage_v
        self.max_cell_index: Final = max_cell_index
        self.min_temp_c: Final = min_temp_c
        self.min_temp_index: Final = min_temp_index
        self.max_temp_c: Final = max_temp_c
        self.max_temp_index: Final = max_temp_index
        self.cell_count: Final = cell_count
        self.cell_index: Final = cell_index
        self.cell_voltage_v: Final = cell_voltage_v
        self.cell_temp_c: Final = cell_temp_c
        self.comm_error: Final = comm_error
        # One sum of the present values is finite exactly when each of them is (a NaN or an
        # infinity propagates): a cheap common case for a check that runs on every frame.
        total = pack_voltage_v + min_cell_voltage_v + max_cell_voltage_v + min_temp_c + max_temp_c
        for value in (current1_a, current2_a, battery_current_a, cell_voltage_v, cell_temp_c):
            if value is not None:
                total += value
        if not (math.isfinite(total) and cell_count >= 0):
            self._explain()

    def _explain(self) -> None:
        """Raise the ValueError that names the bad field."""
        for name in (
            "pack_voltage_v",
            "current1_a",
            "current2_a",
            "battery_current_a",
            "min_cell_voltage_v",
            "max_cell_voltage_v",
            "min_temp_c",
            "max_temp_c",
            "cell_voltage_v",
            "cell_temp_c",
        ):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} is not a finite number: {value!r}")
        if self.cell_count < 0:
            raise ValueError(f"cell_count {self.cell_count} is negative")

    @property
    def measured_battery_current_a(self) -> float | None:
        """Battery current, + = charging: the frame's I-sum, else I1 - I2 from what is there."""
        if self.battery_current_a is not None:
            return self.battery_current_a
        if self.current1_a is None and self.current2_a is None:
            return None
        return (self.current1_a or 0.0) - (self.current2_a or 0.0)

    def with_comm_error(self) -> BmsInputs:
        """The same reading marked as a communication error (for the twin's watchdog)."""
        return self.replace(comm_error=True)
