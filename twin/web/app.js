// The twin's dashboard: draws the state the server pushes over a WebSocket.
// Every value is written as text (textContent), never as markup: a pack id or a string from
// the BMS cannot inject anything. No framework, no build step, nothing from elsewhere.
"use strict";

const state = { data: null, selected: null, socket: null, retry: 1000 };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmt(value, digits, unit) {
  if (value === null || value === undefined) return "-";
  return Number(value).toFixed(digits) + (unit ? " " + unit : "");
}

function setText(id, text) { const node = $(id); if (node) node.textContent = text; }

function onOff(id, value) {
  const node = $(id);
  node.textContent = value === null || value === undefined ? "-" : (value ? "on" : "off");
  node.className = value ? "on" : "off";
}

function light(id, on) { $(id).classList.toggle("lit", Boolean(on)); }

function selectedPack(data) {
  if (!data.packs.length) return null;
  if (state.selected === "fleet" && data.packs.length > 1) {
    // The fleet aggregate, drawn as a pack without cells (the extremes say which pack).
    return Object.assign({ pack_id: "fleet", cells: [], fleet: true }, data.fleet);
  }
  return data.packs.find((p) => p.pack_id === state.selected) || data.packs[0];
}

function drawTabs(data) {
  const tabs = $("tabs");
  const key = data.packs.map((p) => p.pack_id).join("\n");
  if (tabs.dataset.ids === key) return;
  tabs.dataset.ids = key;
  tabs.replaceChildren();
  const ids = data.packs.map((p) => p.pack_id);
  if (ids.length > 1) ids.push("fleet");
  for (const id of ids) {
    const button = el("button", { type: "button", "data-pack": id }, id);
    button.addEventListener("click", () => { state.selected = id; draw(); });
    tabs.append(button);
  }
}

function drawPack(p) {
  document.body.classList.toggle("stale", Boolean(p.stale));
  $("stale-banner").hidden = !p.stale;
  setText("soc", fmt(p.soc_pct, 1, "%"));
  setText("soc-calibrated", p.soc_calibrated ? "calibrated" : "not calibrated yet (no full charge)");
  setText("pack-voltage", fmt(p.pack_voltage_v, 2, "V"));
  setText("battery-current", fmt(p.battery_current_a, 1, "A"));
  setText("battery-power", fmt(p.battery_power_w, 0, "W"));
  setText("current1", fmt(p.current1_a, 1, "A"));
  setText("current2", fmt(p.current2_a, 1, "A"));
  const v = p.pack_voltage_v;
  setText("power1", p.current1_a === null || v === null ? "-" : fmt(p.current1_a * v, 0, "W"));
  setText("power2", p.current2_a === null || v === null ? "-" : fmt(p.current2_a * v, 0, "W"));
  $("arrow-in").classList.toggle("active", (p.current1_a || 0) > 0.05);
  $("arrow-out").classList.toggle("active", (p.current2_a || 0) > 0.05);
  setText("charge-state", p.charge_state ? "the pack is " + p.charge_state : "");
  for (const relay of ["charge", "discharge"]) {
    for (const view of ["reported", "twin", "effective"]) onOff(relay + "-" + view, p[relay + "_" + view]);
  }
  const blocking = [];
  for (const [relay, name] of [["charge", "charge"], ["discharge", "load"]]) {
    if (p[relay + "_effective"]) continue;
    const why = [];
    if (!p[relay + "_reported"]) why.push("the BMS has it off");
    if (!p[relay + "_twin"]) {
      const rows = p[relay + "_blocking"] || [];
      why.push("the twin's logic has it off" + (rows.length ? " (" + rows.join(", ") + ")" : ""));
    }
    if (p.stale) why.push("the data is stale");
    blocking.push(name + " off: " + (why.join(", ") || "-"));
  }
  setText("blocking", blocking.join("; "));
  light("warning-e", p.warning_e); light("warning-vh", p.warning_vh); light("warning-vl", p.warning_vl);
  light("warning-th", p.warning_th); light("warning-tl", p.warning_tl); light("divergent", p.divergent);
  setText("cvl", fmt(p.charge_voltage_limit_v, 2, "V"));
  setText("ccl", fmt(p.charge_current_limit_a, 1, "A"));
  setText("dcl", fmt(p.discharge_current_limit_a, 1, "A"));
  setText("dvl", fmt(p.discharge_voltage_limit_v, 2, "V"));
  const requests = [];
  if (p.force_charge_request) requests.push("force charge");
  if (p.full_charge_request) requests.push("full charge");
  setText("requests", requests.join(", ") || "none");
  setText("temp-min", fmt(p.min_temp_c, 1, "\u00b0C"));
  setText("temp-max", fmt(p.max_temp_c, 1, "\u00b0C"));
  setText("temp-avg", fmt(p.avg_temp_c, 1, "\u00b0C"));
  setText("harvested-today", fmt(p.harvested_today_wh, 0, "Wh"));
  setText("consumed-today", fmt(p.consumed_today_wh, 0, "Wh"));
  setText("harvested-total", fmt(p.harvested_total_wh / 1000, 1, "kWh"));
  setText("consumed-total", fmt(p.consumed_total_wh / 1000, 1, "kWh"));
  drawCells(p);
}

function drawCells(p) {
  const box = $("cells");
  if (box.childElementCount !== p.cells.length) {
    box.replaceChildren();
    for (const cell of p.cells) {
      const bar = el("div", { class: "cell", "data-cell": cell.index });
      bar.append(el("div", { class: "fill" }), el("span", { class: "v" }), el("span", { class: "n" }, cell.index));
      box.append(bar);
    }
  }
  box.classList.toggle("many", p.cells.length > 48);
  const low = p.vmin_v - 0.2, high = p.vmax_v + 0.1;
  const bars = box.children;
  p.cells.forEach((cell, i) => {
    const bar = bars[i];
    bar.className = "cell " + cell.state;
    bar.classList.toggle("min", cell.index === p.min_cell_index && !p.stale);
    bar.classList.toggle("max", cell.index === p.max_cell_index && !p.stale);
    // A stale cell is a full grey bar: no voltage is shown for it, not even the last one.
    const share = cell.voltage_v === null ? 1 : Math.max(0.02, Math.min(1, (cell.voltage_v - low) / (high - low)));
    bar.firstChild.style.height = (share * 100).toFixed(1) + "%";
    bar.children[1].textContent = fmt(cell.voltage_v, 3);
    bar.dataset.voltage = cell.voltage_v === null ? "" : String(cell.voltage_v);
    bar.title = "cell " + cell.index + ": " + fmt(cell.voltage_v, 3, "V") + ", " + fmt(cell.temp_c, 1, "\u00b0C") + " (" + cell.state + ")";
  });
  setText("cell-summary", p.stale ? "stale" : "min " + fmt(p.min_cell_voltage_v, 3, "V") + " (cell " + p.min_cell_index + ")  max " + fmt(p.max_cell_voltage_v, 3, "V") + " (cell " + p.max_cell_index + ")  spread " + fmt(p.cell_spread_v === null ? null : p.cell_spread_v * 1000, 0, "mV"));
}

function drawTrend(pack) {
  const trend = state.data.trend && state.data.trend[pack.pack_id];
  if (!trend) return;
  chart($("trend-v"), trend.t, [["pack_voltage_v", "#1f6feb"]], trend, "V");
  chart($("trend-i"), trend.t, [["battery_current_a", "#d97706"]], trend, "A");
  chart($("trend-soc"), trend.t, [["soc_pct", "#15803d"]], trend, "%");
  chart($("trend-cells"), trend.t, [["min_cell_voltage_v", "#2563eb"], ["max_cell_voltage_v", "#dc2626"]], trend, "V");
}

function chart(canvas, times, series, columns, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const values = series.flatMap(([name]) => columns[name].filter((v) => v !== null));
  if (values.length < 2) { ctx.fillStyle = "#888"; ctx.fillText("collecting samples", 10, 20); return; }
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 0.1) { const mid = (hi + lo) / 2; lo = mid - 0.05; hi = mid + 0.05; } // a flat line in the middle
  // The last hour, right-aligned: the line grows from the right as samples come.
  const t1 = times[times.length - 1], t0 = t1 - 3600;
  ctx.strokeStyle = "#ccc"; ctx.strokeRect(40, 5, w - 45, h - 20);
  ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  ctx.fillText(hi.toFixed(2) + " " + unit, 2, 14); ctx.fillText(lo.toFixed(2), 2, h - 16);
  for (const [name, colour] of series) {
    ctx.strokeStyle = colour; ctx.beginPath();
    let moved = false;
    columns[name].forEach((v, i) => {
      if (v === null) { moved = false; return; }
      const x = 40 + (w - 45) * (times[i] - t0) / (t1 - t0);
      const y = 5 + (h - 20) * (1 - (v - lo) / (hi - lo));
      if (moved) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      moved = true;
    });
    ctx.stroke();
  }
}

function drawEvents(events) {
  const list = $("events");
  const last = Number(list.dataset.last || 0);
  for (const event of events) {
    if (event.n <= last) continue;
    const when = new Date(event.t * 1000).toLocaleTimeString();
    list.prepend(el("li", { class: event.level }, when + "  " + event.message));
    list.dataset.last = String(event.n);
  }
  while (list.childElementCount > 200) list.lastChild.remove();
}

function drawExporters(exporters) {
  const list = $("exporters");
  list.replaceChildren(...Object.values(exporters).map((text) => el("li", {}, text)));
}

function drawEmulator(data, pack) {
  const emulated = data.emulated[pack.pack_id];
  $("emulator-card").hidden = !emulated;
  if (!emulated) return;
  const select = $("fault-name");
  if (!select.childElementCount) {
    for (const name of Object.keys(data.fault_kinds)) select.append(el("option", { value: name }, name));
    select.addEventListener("change", () => drawFaultParams(data.fault_kinds));
    drawFaultParams(data.fault_kinds);
  }
  const faults = Object.entries(emulated.faults);
  $("faults").replaceChildren(...(faults.length ? faults.map(([key, params]) => el("li", {}, key + " " + JSON.stringify(params))) : [el("li", {}, "no fault injected")]));
  const plant = Object.entries(emulated.plant);
  $("plant").replaceChildren(...(plant.length ? plant.map(([name, value]) => el("li", {}, name + " = " + value)) : [el("li", {}, "the plant follows its own profile")]));
}

function drawFaultParams(kinds) {
  const kind = kinds[$("fault-name").value];
  const box = $("fault-params");
  box.replaceChildren();
  if (!kind) return;
  box.append(el("p", { class: "small" }, kind.description));
  for (const name of kind.required) box.append(param(name, "", true));
  for (const [name, value] of Object.entries(kind.optional)) box.append(param(name, value === null ? "" : value, false));
}

function param(name, value, required) {
  const label = el("label", {}, name + " ");
  const input = el("input", { name: name, "data-param": name });
  input.value = String(value);
  if (required) input.required = true;
  label.append(input);
  return label;
}

function drawSettingsFields(data, pack) {
  const box = $("settings-fields");
  if (box.dataset.pack === pack.pack_id) return;
  box.dataset.pack = pack.pack_id;
  box.replaceChildren();
  for (const [name, [unit, description]] of Object.entries(data.writable)) {
    const label = el("label", { title: description }, name + " (" + unit + ") ");
    const input = el("input", { type: "number", step: "any", "data-setting": name, placeholder: String(pack[name]) });
    label.append(input);
    box.append(label);
  }
}

function draw() {
  const data = state.data;
  if (!data) return;
  setText("version", data.version);
  drawTabs(data);
  const pack = selectedPack(data);
  if (!pack) return;
  for (const button of $("tabs").children) button.classList.toggle("selected", button.dataset.pack === pack.pack_id);
  drawPack(pack);
  $("settings-card").hidden = Boolean(pack.fleet);
  $("cells-card").hidden = Boolean(pack.fleet);
  if (!pack.fleet) {
    drawSettingsFields(data, pack);
    drawEmulator(data, pack);
    drawTrend(pack);
  } else {
    $("emulator-card").hidden = true;
  }
  drawEvents(data.events);
  drawExporters(data.exporters);
}

function connect() {
  const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  state.socket = socket;
  socket.addEventListener("open", () => { state.retry = 1000; setText("link", "live"); $("link").className = "link up"; });
  socket.addEventListener("message", (message) => {
    const data = JSON.parse(message.data);
    if (!data.trend && state.data) data.trend = state.data.trend; // sent only with a new sample
    state.data = data;
    draw();
  });
  socket.addEventListener("close", () => {
    setText("link", "reconnecting"); $("link").className = "link down";
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 10000);
  });
}

async function post(path, body, result) {
  const pack = selectedPack(state.data);
  const response = await fetch("/api/packs/" + encodeURIComponent(pack.pack_id) + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  const node = $(result);
  node.textContent = answer.ok ? answer.message : "refused: " + answer.error;
  node.className = "result small " + (answer.ok ? "ok" : "refused");
  return answer;
}

function setup() {
  $("settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const values = {};
    for (const input of document.querySelectorAll("[data-setting]")) {
      if (input.value !== "") values[input.dataset.setting] = Number(input.value);
    }
    post("/settings", { pin: $("settings-pin").value, values: values }, "settings-result");
  });
  $("clear-counters").addEventListener("click", () => post("/clear-counters", { pin: $("settings-pin").value }, "settings-result"));
  $("fault-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const params = {};
    for (const input of document.querySelectorAll("[data-param]")) {
      if (input.value === "") continue;
      const number = Number(input.value);
      params[input.dataset.param] = Number.isNaN(number) ? input.value : number;
    }
    post("/faults/" + encodeURIComponent($("fault-name").value), { params: params }, "emulator-result");
  });
  $("fault-clear").addEventListener("click", () => post("/faults/" + encodeURIComponent($("fault-name").value), { clear: true }, "emulator-result"));
  $("plant-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const timeout = $("plant-timeout").value;
    post("/plant/" + $("plant-name").value, { value: Number($("plant-value").value), timeout_s: timeout === "" ? null : Number(timeout) }, "emulator-result");
  });
  $("plant-clear").addEventListener("click", () => post("/plant/" + $("plant-name").value, { clear: true }, "emulator-result"));
  connect();
}

document.addEventListener("DOMContentLoaded", setup);
