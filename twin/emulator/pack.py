"""Pack physics: a string of cells, each a 1RC equivalent circuit with a two-node thermal model.

What it models (cell-model.md sections 1.1-1.5, bms-behaviour.md section 2), vectorised over the
cells with numpy and seeded so that a scenario is reproducible:

- **Cell**: terminal voltage ``V = OCV(SOC) + v1 + R0(T) x I`` (I > 0 charging), with the RC
  state ``v1`` updated by the exact zero-order-hold exponential (stable for any step) and
  resistances scaled with temperature by Arrhenius. OCV tables per chemistry, extended past
  0 % and 100 % by steep tails so that an over-charged or over-discharged cell does cross V-max
  and V-min as a real one does.
- **Spread**: capacity, R0, initial SOC and self-discharge drawn per cell from a preset (matched /
  typical DIY / bad pack), plus per-cell overrides; self-discharge doubles per +10 K.
- **Boards**: each cell board draws its self-consumption from its own cell (the Begin and End
  boards more than the others), and bleeds about 1 A through its resistor while its cell is above
  V-balance (with a small hysteresis). Neither current passes the pack's current sensor.
- **Heat**: node 1 is the cell body (Joule heat, to the air); node 2 is the board and its
  temperature sensor, heated by the balancing resistor, coupled to the cell and to the air. The
  BMS reads node 2, so a balancing board reads much hotter than its cell.

Pure: no clock, no I/O; the caller passes ``dt_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from twin.model.settings import Chemistry, Generation

FloatArray = npt.NDArray[np.float64]

GAS_CONSTANT_J_PER_MOL_K = 8.314
KELVIN = 273.15
T_REF_K = 298.15
SECONDS_PER_MONTH = 30.0 * 86_400.0

# fmt: off
#: OCV at 25 C against SOC (fraction), cell-model.md section 1.2. The points below 0 and above 1
#: are the steep tails of an over-discharged / over-charged cell (an estimate: the tables stop
#: at the cut-off voltages), so that V-min and V-max stay reachable as on a real cell.
OCV_TABLES: dict[Chemistry, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # Prada2013 (PyBaMM, A123 LFP), the two-step plateau and the steep rise above 98 %.
    Chemistry.LIFEPO4: (
        (-0.03, 0.0, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.85,
         0.90, 0.95, 0.98, 1.0, 1.01, 1.03),
        (1.50, 2.000, 2.460, 2.785, 2.978, 3.108, 3.168, 3.206, 3.252, 3.266, 3.269, 3.274,
         3.310, 3.313, 3.314, 3.316, 3.350, 3.600, 3.80, 4.20),
    ),
    # Gree / Yinlong LTO datasheet table.
    Chemistry.LTO: (
        (-0.03, 0.0, 0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 1.0,
         1.01, 1.03),
        (1.50, 2.069, 2.114, 2.131, 2.156, 2.177, 2.196, 2.217, 2.246, 2.290, 2.352, 2.429,
         2.472, 2.525, 2.70, 3.00),
    ),
    # Chen2020 (PyBaMM, LG M50 NMC811).
    Chemistry.NMC: (
        (-0.03, 0.0, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.85,
         0.90, 0.95, 0.98, 1.0, 1.01, 1.03),
        (2.00, 2.500, 2.862, 3.109, 3.296, 3.434, 3.485, 3.581, 3.667, 3.751, 3.841, 3.948,
         4.042, 4.081, 4.097, 4.124, 4.164, 4.200, 4.30, 4.50),
    ),
    # Ecker2015 (PyBaMM, Kokam NMC pouch), the generic "Li-ion" preset.
    Chemistry.LI_ION: (
        (-0.03, 0.0, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.85,
         0.90, 0.95, 0.98, 1.0, 1.01, 1.03),
        (2.00, 2.500, 3.034, 3.294, 3.459, 3.528, 3.587, 3.709, 3.770, 3.787, 3.815, 3.882,
         3.987, 4.030, 4.079, 4.135, 4.173, 4.200, 4.30, 4.50),
    ),
}
# fmt: on

#: DC resistance x capacity (ohm x Ah) of a typical cell (cell-model.md 1.3 scaling rule).
RESISTANCE_AH: dict[Chemistry, float] = {
    Chemistry.LIFEPO4: 0.13,  # large prismatic LFP: 280 Ah -> 0.46 mOhm
    Chemistry.LTO: 0.025,  # 40 Ah LTO -> 0.6 mOhm
    Chemistry.NMC: 0.12,
    Chemistry.LI_ION: 0.12,
}

#: The SOC limits of the true state (beyond the ends the tails apply).
SOC_MIN, SOC_MAX = -0.03, 1.03


def ocv_v(chemistry: Chemistry, soc: FloatArray | float) -> FloatArray:
    """Open-circuit voltage of ``chemistry`` at state of charge ``soc`` (fraction), 25 C."""
    xs, ys = OCV_TABLES[chemistry]
    return np.asarray(np.interp(soc, xs, ys), dtype=np.float64)


class Spread(Enum):
    """How different the cells of a pack are (cell-model.md section 1.4)."""

    MATCHED = "matched"
    """New, matched, top-balanced cells."""
    TYPICAL = "typical"
    """A typical DIY pack of grade-A cells from one batch."""
    BAD = "bad"
    """Mixed cells: wide spread, plus one weak cell, one high-resistance cell, one leaky cell."""


@dataclass(frozen=True, slots=True)
class SpreadPreset:
    """The distributions of a spread preset."""

    capacity_sigma: float
    """Relative standard deviation of capacity."""
    r0_sigma: float
    soc_sigma: float
    """Standard deviation of the initial SOC (fraction)."""
    self_discharge_pct_per_month: float
    self_discharge_spread: float
    """Relative half-width of the uniform self-discharge spread."""
    outliers: bool = False
    """One cell at -10 % capacity, one at +50 % R0, one at 8 %/month self-discharge."""


SPREADS: dict[Spread, SpreadPreset] = {
    Spread.MATCHED: SpreadPreset(0.003, 0.01, 0.002, 1.0, 0.2),
    Spread.TYPICAL: SpreadPreset(0.015, 0.05, 0.02, 2.0, 0.5),
    Spread.BAD: SpreadPreset(0.03, 0.10, 0.05, 2.0, 0.5, outliers=True),
}


@dataclass(frozen=True, slots=True)
class CellOverride:
    """Values for one cell (1-based ``index``) that replace what the spread drew."""

    index: int
    capacity_ah: float | None = None
    r0_ohm: float | None = None
    soc_pct: float | None = None
    self_discharge_pct_per_month: float | None = None


def board_currents_a(
    generation: Generation, cell_count: int, sensor_count: int = 2, phone_connected: bool = False
) -> tuple[float, ...]:
    """Each board's self-consumption, first (Begin / IN) to last (End / OUT) cell.

    bms-behaviour.md section 2: the manuals give upper bounds ("< 1.0 mA"); they are used as the
    averages.
    """
    if generation is Generation.GEN3:
        between, begin = 0.0010, (0.0011 if sensor_count == 1 else 0.0016)
        end = 0.011 if phone_connected else 0.0016
    else:
        between, begin = 0.0010, (0.0020 if sensor_count == 1 else 0.0029)
        end = 0.009 if phone_connected else 0.0020
    if cell_count < 2:
        raise ValueError(f"a chain has at least 2 boards, got {cell_count}")
    return (begin,) + (between,) * (cell_count - 2) + (end,)


@dataclass(frozen=True, slots=True)
class PackSpec:
    """A pack to simulate: chemistry, size, spread and thermal surroundings."""

    chemistry: Chemistry = Chemistry.LIFEPO4
    cell_count: int = 16
    capacity_ah: float = 280.0
    r0_ohm: float | None = None
    """Ohmic resistance at 25 C; None = the chemistry's DCIR x Ah rule, 60 % of the DCIR."""
    r1_ohm: float | None = None
    """The RC branch's resistance; None = 40 % of the DCIR."""
    tau1_s: float = 40.0
    spread: Spread = Spread.TYPICAL
    overrides: tuple[CellOverride, ...] = ()
    initial_soc_pct: float = 50.0
    seed: int = 0
    ambient_c: float = 25.0
    cell_heat_capacity_j_per_k: float | None = None
    """None = 20 J/K per Ah (a 280 Ah prismatic cell is about 5.6 kJ/K)."""
    cell_to_air_k_per_w: float = 2.0
    board_heat_capacity_j_per_k: float = 10.0
    board_to_cell_k_per_w: float = 4.5
    board_to_air_k_per_w: float = 30.0
    balance_current_a: float = 1.0
    """The bleed current of a balancing board at V-balance (its resistor is V-balance / this)."""
    balance_hysteresis_v: float = 0.010
    activation_energy_j_per_mol: float = 20_000.0
    """Arrhenius activation energy of the resistances (x2.1 at 0 C)."""

    def __post_init__(self) -> None:
        if not 2 <= self.cell_count <= 255:
            raise ValueError(f"cell_count {self.cell_count} is out of range (allowed 2..255)")
        for name in (
            "capacity_ah",
            "tau1_s",
            "cell_to_air_k_per_w",
            "board_heat_capacity_j_per_k",
            "board_to_cell_k_per_w",
            "board_to_air_k_per_w",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.initial_soc_pct <= 100.0:
            raise ValueError(f"initial_soc_pct {self.initial_soc_pct} is out of range (0..100)")
        for override in self.overrides:
            if not 1 <= override.index <= self.cell_count:
                raise ValueError(
                    f"override for cell {override.index}: no such cell (1..{self.cell_count})"
                )

    @property
    def dcir_ohm(self) -> float:
        """The nominal DC resistance of a cell (R0 + R1)."""
        return RESISTANCE_AH[self.chemistry] / self.capacity_ah


class Pack:
    """The state of a simulated string of cells; ``step`` advances it.

    The arrays are public for reading (index 0 is cell 1, on the Begin board). Faults change
    them through the methods below, never by poking the arrays.
    """

    def __init__(self, spec: PackSpec, board_currents: Sequence[float] | None = None) -> None:
        n = spec.cell_count
        rng = np.random.default_rng(spec.seed)
        preset = SPREADS[spec.spread]
        self.spec = spec
        capacity = spec.capacity_ah * (1.0 + preset.capacity_sigma * rng.standard_normal(n))
        dcir = spec.dcir_ohm
        r0_nominal = spec.r0_ohm if spec.r0_ohm is not None else 0.6 * dcir
        r0 = r0_nominal * np.maximum(0.2, 1.0 + preset.r0_sigma * rng.standard_normal(n))
        soc = spec.initial_soc_pct / 100.0 + preset.soc_sigma * rng.standard_normal(n)
        half = preset.self_discharge_spread
        sd = preset.self_discharge_pct_per_month * rng.uniform(1.0 - half, 1.0 + half, n)
        if preset.outliers and n >= 4:
            weak, resistive, leaky = (int(i) for i in rng.choice(n, size=3, replace=False))
            capacity[weak] = spec.capacity_ah * 0.90
            r0[resistive] = r0_nominal * 1.5
            sd[leaky] = 8.0
        for o in spec.overrides:
            i = o.index - 1
            if o.capacity_ah is not None:
                capacity[i] = o.capacity_ah
            if o.r0_ohm is not None:
                r0[i] = o.r0_ohm
            if o.soc_pct is not None:
                soc[i] = o.soc_pct / 100.0
            if o.self_discharge_pct_per_month is not None:
                sd[i] = o.self_discharge_pct_per_month
        if np.any(capacity <= 0) or np.any(r0 <= 0):
            raise ValueError("capacities and resistances must be > 0")
        self.capacity_ah: FloatArray = capacity
        self.r0_ohm: FloatArray = r0
        self.r1_ohm: FloatArray = np.full(n, spec.r1_ohm if spec.r1_ohm is not None else 0.4 * dcir)
        self.self_discharge_pct_per_month: FloatArray = sd
        board = np.zeros(n) if board_currents is None else np.asarray(board_currents, float)
        if board.shape != (n,):
            raise ValueError(f"board_currents: {len(board)} values for {n} cells")
        self.board_current_a: FloatArray = board
        self.soc: FloatArray = np.clip(soc, 0.0, 1.0)
        """True state of charge per cell (fraction; a little beyond 0..1 when abused)."""
        self.v1: FloatArray = np.zeros(n)
        self.cell_temp_c: FloatArray = np.full(n, spec.ambient_c)
        self.board_temp_c: FloatArray = np.full(n, spec.ambient_c)
        self.balancing: npt.NDArray[np.bool_] = np.zeros(n, dtype=bool)
        self.balance_current_a: FloatArray = np.zeros(n)
        self.cell_current_a: FloatArray = np.zeros(n)
        self.ambient_c = spec.ambient_c
        self._xs, self._ys = (np.asarray(a) for a in OCV_TABLES[spec.chemistry])
        self._cell_heat = (
            spec.cell_heat_capacity_j_per_k
            if spec.cell_heat_capacity_j_per_k is not None
            else 20.0 * spec.capacity_ah
        )
        self.voltage_v: FloatArray = np.interp(self.soc, self._xs, self._ys)
        """Terminal voltage per cell."""
        self.pack_voltage_v = float(self.voltage_v.sum())
        """The sum of the cell voltages."""
        self._vmax_v = float(self.voltage_v.max())
        self._any_balancing = False
        # Heat, temperature-dependent resistance and self-discharge change over minutes: they are
        # updated every THERMAL_INTERVAL_S of simulated time from the averages since the last
        # update, which keeps the per-step work to a few array operations.
        self._heat_i2 = np.zeros(n)
        self._heat_bleed = np.zeros(n)
        self._heat_steps = 0
        self._heat_time_s = 0.0
        self._dt_s = 0.0
        # Never written in place: shared by every step with balancing off.
        self._zeros = np.zeros(n)
        self._no_balancing = np.zeros(n, dtype=bool)
        self._refresh()

    THERMAL_INTERVAL_S = 10.0

    # ---- state ---------------------------------------------------------------------------

    @property
    def cell_count(self) -> int:
        """Cells in series."""
        return self.spec.cell_count

    @property
    def ohmic_resistance_ohm(self) -> float:
        """The string's R0 at the present cell temperatures (what a charger's regulation sees)."""
        return float(self._r0.sum())

    @property
    def soc_pct(self) -> float:
        """The true pack SOC: charge stored over capacity, summed over the cells (0..100)."""
        clipped = np.minimum(np.maximum(self.soc, 0.0), 1.0)
        return 100.0 * float(clipped @ self.capacity_ah) / float(self.capacity_ah.sum())

    @property
    def deliverable_ah(self) -> float:
        """What the pack can still deliver: the cell with the least charge stops it."""
        return float(np.min(np.clip(self.soc, 0.0, 1.0) * self.capacity_ah))

    # ---- faults and changes --------------------------------------------------------------

    def fade_capacity(self, index: int, capacity_ah: float) -> None:
        """A weak cell: cell ``index`` (1-based) now holds ``capacity_ah``; its charge scales."""
        if capacity_ah <= 0:
            raise ValueError("capacity_ah must be > 0")
        self.capacity_ah[self._cell(index)] = capacity_ah
        self._refresh()

    def set_self_discharge(self, index: int, pct_per_month: float) -> None:
        """A leaky cell: cell ``index`` (1-based) loses ``pct_per_month`` per month at 25 C."""
        if pct_per_month < 0:
            raise ValueError("pct_per_month must be >= 0")
        self.self_discharge_pct_per_month[self._cell(index)] = pct_per_month
        self._refresh()

    def set_board_current(self, index: int, current_a: float) -> None:
        """The self-consumption of board ``index`` (e.g. the End board with a phone connected)."""
        self.board_current_a[self._cell(index)] = current_a
        self._refresh()

    def _cell(self, index: int) -> int:
        if not 1 <= index <= self.cell_count:
            raise ValueError(f"no cell {index} (1..{self.cell_count})")
        return index - 1

    # ---- dynamics ------------------------------------------------------------------------

    def step(
        self,
        current_a: float,
        dt_s: float,
        vbalance_v: float | None,
        ambient_c: float | None = None,
    ) -> None:
        """Advance ``dt_s`` with ``current_a`` through the string (+ = charging).

        ``vbalance_v`` is the boards' balance threshold, None when balancing is off.
        """
        if not dt_s > 0:
            raise ValueError(f"dt_s must be > 0, got {dt_s!r}")
        if ambient_c is not None:
            self.ambient_c = ambient_c
        if dt_s != self._dt_s:
            self._dt_s = dt_s
            self._refresh_gains()
        voltage = self.voltage_v
        if vbalance_v is None or (not self._any_balancing and self._vmax_v <= vbalance_v):
            # No board bleeds (the common case, checked on last step's highest cell): skip the
            # balancing arithmetic.
            self.balancing = self._no_balancing
            bleed = None
        else:
            # The board bleeds through a resistor sized for balance_current_a at V-balance; it
            # starts above V-balance and stops a little below (hysteresis).
            balancing = (voltage > vbalance_v) | (
                self.balancing & (voltage > vbalance_v - self.spec.balance_hysteresis_v)
            )
            if balancing.any():
                self.balancing = balancing
                bleed = balancing * (voltage * (self.spec.balance_current_a / vbalance_v))
            else:
                self.balancing = self._no_balancing
                bleed = None
        current = current_a - self._internal_a
        if bleed is not None:
            current -= bleed
            self._heat_bleed += bleed
            self._any_balancing = True
            self.balance_current_a = bleed
        elif self._any_balancing:
            self._any_balancing = False
            self.balance_current_a = self._zeros
        soc = self.soc + current * self._soc_gain
        # Two in-place ufuncs: np.clip's Python wrapper costs twice as much.
        np.maximum(soc, SOC_MIN, out=soc)
        np.minimum(soc, SOC_MAX, out=soc)
        self.soc = soc
        v1 = self.v1 * self._decay
        v1 += self._r1_gain * current
        self.v1 = v1
        voltage = np.interp(soc, self._xs, self._ys)
        voltage += v1
        voltage += self._r0 * current
        self.voltage_v = voltage
        self._vmax_v = float(voltage[voltage.argmax()])
        self.pack_voltage_v = float(voltage.sum())
        self.cell_current_a = current
        self._heat_i2 += current * current
        self._heat_steps += 1
        self._heat_time_s += dt_s
        if self._heat_time_s >= self.THERMAL_INTERVAL_S:
            self._heat()

    def _heat(self) -> None:
        """The two thermal nodes over the last interval, each implicit in itself (stable)."""
        spec = self.spec
        dt_s, steps = self._heat_time_s, self._heat_steps
        ambient = self.ambient_c
        cell, board = self.cell_temp_c, self.board_temp_c
        g_ca = 1.0 / spec.cell_to_air_k_per_w
        g_bc = 1.0 / spec.board_to_cell_k_per_w
        g_ba = 1.0 / spec.board_to_air_k_per_w
        p_cell = self._heat_i2 / steps * (self._r0 + self.r1_ohm * self._temp_factor)
        p_board = self._heat_bleed / steps * self.voltage_v
        k = dt_s / self._cell_heat
        new_cell = (cell + k * (p_cell + g_ca * ambient + g_bc * board)) / (1.0 + k * (g_ca + g_bc))
        kb = dt_s / spec.board_heat_capacity_j_per_k
        self.board_temp_c = (board + kb * (p_board + g_ba * ambient + g_bc * new_cell)) / (
            1.0 + kb * (g_ba + g_bc)
        )
        self.cell_temp_c = new_cell
        self._heat_i2[:] = 0.0
        self._heat_bleed[:] = 0.0
        self._heat_steps = 0
        self._heat_time_s = 0.0
        self._refresh()

    def _refresh(self) -> None:
        """Recompute what depends on temperature, capacity and the fixed currents."""
        spec = self.spec
        self._temp_factor = np.exp(
            spec.activation_energy_j_per_mol
            / GAS_CONSTANT_J_PER_MOL_K
            * (1.0 / (self.cell_temp_c + KELVIN) - 1.0 / T_REF_K)
        )
        self._r0 = self.r0_ohm * self._temp_factor
        # Self-discharge doubles per +10 K; with the boards' consumption it never passes the
        # current sensor.
        leak_a = (
            self.self_discharge_pct_per_month
            / 100.0
            * self.capacity_ah
            * 3600.0
            / SECONDS_PER_MONTH
            * np.exp2((self.cell_temp_c - 25.0) / 10.0)
        )
        self._internal_a = self.board_current_a + leak_a
        self._refresh_gains()

    def _refresh_gains(self) -> None:
        dt_s = self._dt_s or 1.0
        self._decay = math.exp(-dt_s / self.spec.tau1_s)
        self._r1_gain = (1.0 - self._decay) * self.r1_ohm * self._temp_factor
        self._soc_gain = dt_s / 3600.0 / self.capacity_ah
