"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

``twin run`` in a subprocess with the page on a free port; the browser reads the page while
the test reads Modbus at the same time. Screenshots (desktop and phone) are saved in the
test's output folder (``tmp_path``); with ``TWIN_REGENERATE_DOCS=1`` the desktop one also
replaces docs/dashboard.png.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, wait_until
from tests.frames import frame_stream
from twin.sources.base import Chunk
from twin.sources.capture import CaptureWriter

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parents[2] / "docs"
WATCHDOG_S = 5.0

CONFIG = """
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = {cells}
capacity_wh = {capacity_wh}
pin = "4321"

[pack.source]
kind = "emulator"
true_soc_pct = 60
stale_after_s = {watchdog}

[store]
path = "state.json"

[modbus]
port = {port}

[can]
enabled = false

[web]
port = {web_port}
"""


def _driver(width: int, height: int) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags a closed network needs (no background connections, no first-run traffic).
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--window-size={width},{height}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "no chromium / chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("TWIN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)  # .ci/run installed them: a missing browser is a broken CI
        pytest.skip(message)
    driver = _driver(1280, 1400)
    yield driver
    driver.quit()


class Twin:
    """A running twin's ports."""

    def __init__(self, process: TwinProcess, port: int, web_port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{web_port}/"


def _start(tmp_path: Path, cells: int = 16, speed: float = 1.0) -> tuple[TwinProcess, int, int]:
    port, web_port = free_port(), free_port()
    config = tmp_path / "twin.toml"
    config.write_text(
        CONFIG.format(
            cells=cells,
            capacity_wh=cells * 3.2 * 100,
            watchdog=WATCHDOG_S,
            port=port,
            web_port=web_port,
        ),
        encoding="utf-8",
    )
    return TwinProcess(config, speed=speed), port, web_port


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Twin]:
    process, port, web_port = _start(tmp_path)
    with process:
        process.wait_for_message("web: the dashboard is on")
        process.wait_for_message("pack1: receiving frames")
        yield Twin(process, port, web_port)
        assert process.stop() == 0


def _registers(port: int, address: int, count: int) -> list[int]:
    with RawModbus(port) as raw:
        registers = raw.read_holding(1, address, count)
    assert isinstance(registers, list), f"exception {registers}"
    return registers


def _number(text: str) -> float | None:
    head = text.split()[0] if text.strip() else "-"
    return None if head == "-" else float(head)


def _page(driver: WebDriver) -> dict[str, object]:
    """What the page shows now: SOC, pack voltage, cell 5, the stale banner and warnings."""
    script = """
        const cell = document.querySelector('[data-cell="5"]');
        return {
          soc: document.getElementById('soc').textContent,
          voltage: document.getElementById('pack-voltage').textContent,
          cell5: cell ? cell.dataset.voltage : null,
          cells: document.querySelectorAll('#cells .cell').length,
          staleCells: document.querySelectorAll('#cells .cell.stale').length,
          banner: !document.getElementById('stale-banner').hidden,
          e: document.getElementById('warning-e').classList.contains('lit'),
          link: document.getElementById('link').textContent,
        };
    """
    result = driver.execute_script(script)
    assert isinstance(result, dict)
    return result


def _modbus(port: int) -> dict[str, float | int]:
    """The same values over Modbus (and E and the effective relays)."""
    measured = _registers(port, 100, 11)
    status = _registers(port, 124, 2)
    warning = _registers(port, 131, 1)
    cell = _registers(port, 1000 + 4 * 4, 1)
    return {
        "voltage": ((measured[0] << 16) | measured[1]) / 1000.0,
        "soc": measured[10] / 10.0,
        "cell5": cell[0] / 1000.0,
        "charge": status[0],
        "discharge": status[1],
        "e": warning[0],
    }


def _agree(driver: WebDriver, port: int) -> bool:
    """The page and Modbus, read at the same time, show the same values (the page's rounding)."""
    page, modbus = _page(driver), _modbus(port)
    soc, voltage = _number(str(page["soc"])), _number(str(page["voltage"]))
    cell5 = page["cell5"]
    if soc is None or voltage is None or not cell5:
        return False
    return (
        abs(soc - modbus["soc"]) <= 0.051
        and abs(voltage - modbus["voltage"]) <= 0.0051
        and abs(float(str(cell5)) - modbus["cell5"]) <= 0.0011
    )


def _open(driver: WebDriver, url: str) -> None:
    """Load ``url`` with a fresh console (the last test's page, its twin gone, is left first)."""
    driver.get("about:blank")
    driver.get_log("browser")  # type: ignore[no-untyped-call]  # reading it empties it
    driver.get(url)


def _console_errors(driver: WebDriver) -> list[dict[str, object]]:
    entries = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e for e in entries if e.get("level") == "SEVERE"]


def _screenshots(driver: WebDriver, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1280, 1400)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(directory / f"{name}-desktop.png"))
    if os.environ.get("TWIN_REGENERATE_DOCS") == "1" and name == "dashboard":
        shutil.copy(directory / f"{name}-desktop.png", DOCS / "dashboard.png")
    driver.set_window_size(390, 844)  # a phone
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(directory / f"{name}-phone.png"))
    driver.set_window_size(1280, 1400)


def test_the_page_loads_clean_and_agrees_with_modbus(
    browser: WebDriver, twin: Twin, tmp_path: Path
) -> None:
    _open(browser, twin.url)
    wait_until(lambda: _page(browser)["link"] == "live", what="the live link")
    wait_until(lambda: _agree(browser, twin.port), what="the page equal to Modbus")
    assert _console_errors(browser) == []
    assert _page(browser)["cells"] == 16
    # Every cell reported once (the UART brings one a second) and a trend begun: the picture.
    wait_until(lambda: _page(browser)["staleCells"] == 0, timeout_s=40.0, what="every cell")
    _screenshots(browser, tmp_path / "screenshots", "dashboard")
    assert (tmp_path / "screenshots" / "dashboard-phone.png").stat().st_size > 10_000


def test_a_fault_from_the_page_breaks_the_chain_and_clearing_it_brings_the_values_back(
    browser: WebDriver, twin: Twin, tmp_path: Path
) -> None:
    _open(browser, twin.url)
    wait_until(lambda: _agree(browser, twin.port), what="fresh values")
    Select(browser.find_element(By.ID, "fault-name")).select_by_value("break-chain")
    browser.find_element(By.CSS_SELECTOR, '[data-param="after_board"]').send_keys("8")
    browser.find_element(By.ID, "fault-inject").click()
    wait_until(
        lambda: "fault break-chain injected" in browser.find_element(By.ID, "emulator-result").text,
        what="the injection answered",
    )
    injected = time.monotonic()
    # The twin's watchdog: E on and both effective relays off on Modbus.
    wait_until(
        lambda: (
            _modbus(twin.port)["e"] == 1
            and _modbus(twin.port)["charge"] == 0
            and _modbus(twin.port)["discharge"] == 0
        ),
        timeout_s=WATCHDOG_S + 1.0 + 1.0,  # the watchdog + 1 s, + one message cycle
        what="E and the relays off",
    )
    assert time.monotonic() - injected <= WATCHDOG_S + 2.0
    # The page shows the data as stale, never the last values.
    wait_until(lambda: _page(browser)["banner"] is True, what="the stale banner")
    page = _page(browser)
    assert page["e"] is True
    assert page["soc"] != "-"  # the twin's own SOC stays
    assert page["voltage"] == "-"
    assert page["staleCells"] == 16
    # The events say what happened: the fault, the silence, E, the relays with their reason.
    wait_until(
        lambda: all(
            text in str(browser.execute_script(
                "return document.getElementById('events').textContent"))
            for text in ("fault break-chain injected", "warnings E",
                         "charge relay off (the twin) (NO_COMMUNICATION")
        ),
        what="the events of the fault",
    )  # fmt: skip
    _screenshots(browser, tmp_path / "screenshots", "stale")
    # Cleared from the page: the frames and the values come back.
    browser.find_element(By.ID, "fault-clear").click()
    wait_until(lambda: _modbus(twin.port)["e"] == 0, timeout_s=30.0, what="E off again")
    wait_until(lambda: _page(browser)["banner"] is False, what="fresh data on the page")
    wait_until(lambda: _agree(browser, twin.port), what="the values back")


def test_a_wrong_pin_from_the_page_counts_in_the_same_lockout_as_modbus(
    browser: WebDriver, twin: Twin
) -> None:
    _open(browser, twin.url)
    wait_until(lambda: _page(browser)["link"] == "live", what="the live link")
    browser.find_element(By.CSS_SELECTOR, '[data-setting="vmax_v"]').send_keys("3.65")
    browser.find_element(By.ID, "settings-pin").send_keys("1111")
    browser.find_element(By.ID, "settings-write").click()
    result = browser.find_element(By.ID, "settings-result")
    wait_until(lambda: result.text == "refused: wrong PIN", what="the refusal")
    assert _registers(twin.port, 224, 1) == [1]  # wrong_pins, counted with Modbus's
    with RawModbus(twin.port) as raw:
        for _ in range(4):  # four more over Modbus: five within a minute lock out
            raw.write_multiple(1, 220, [0, 1111])
    assert _registers(twin.port, 222, 1) == [2]  # lock_state: locked out
    browser.find_element(By.ID, "settings-pin").clear()
    browser.find_element(By.ID, "settings-pin").send_keys("4321")  # right, but locked out
    browser.find_element(By.ID, "settings-write").click()
    wait_until(lambda: "locked out" in result.text, what="the lockout on the page")
    assert _registers(twin.port, 201, 1) == [3700]  # V-max unchanged


def test_markup_reaches_the_page_as_text_and_a_cross_origin_write_is_refused(
    browser: WebDriver, twin: Twin
) -> None:
    _open(browser, twin.url)
    wait_until(lambda: _page(browser)["link"] == "live", what="the live link")
    # A request names a fault with markup: it is refused, and the log line with the name
    # reaches the page's event log as text.
    name = urllib.parse.quote("<img src=x id=injected>")
    answer = _post(f"{twin.url}api/packs/pack1/faults/{name}", {"params": {}})
    assert answer[0] == 400
    wait_until(
        lambda: "<img src=x id=injected>" in str(browser.execute_script(
            "return document.getElementById('events').textContent")),
        what="the event as text",
    )  # fmt: skip
    assert browser.execute_script("return document.getElementById('injected')") is None
    # Another origin cannot write (no CSRF), even with the right PIN.
    status, body = _post(
        f"{twin.url}api/packs/pack1/clear-counters",
        {"pin": "4321"},
        origin="http://evil.example",
    )
    assert status == 403
    assert body["error"] == "cross-origin request from http://evil.example"
    # And a write that is not JSON (what a cross-site form can send) is refused too.
    status, body = _post(f"{twin.url}api/packs/pack1/clear-counters", None, form="pin=4321")
    assert status == 403
    assert _console_errors(browser) == []


def _post(
    url: str, body: object, *, origin: str | None = None, form: str | None = None
) -> tuple[int, dict[str, object]]:
    if form is not None:
        data, kind = form.encode(), "application/x-www-form-urlencoded"
    else:
        data, kind = json.dumps(body).encode(), "application/json"
    headers = {"Content-Type": kind}
    if origin is not None:
        headers["Origin"] = origin
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_255_cell_pack_renders_all_its_cells(browser: WebDriver, tmp_path: Path) -> None:
    # 20x: the UART reports one cell a frame, so every cell has a voltage within 13 s.
    process, _, web_port = _start(tmp_path, cells=255, speed=20.0)
    with process:
        process.wait_for_message("web: the dashboard is on")
        _open(browser, f"http://127.0.0.1:{web_port}/")
        wait_until(lambda: _page(browser)["cells"] == 255, what="255 cell bars")
        wait_until(
            lambda: browser.execute_script(
                "return document.querySelectorAll("
                "'#cells .cell[data-voltage]:not([data-voltage=\"\"])').length"
            ) == 255,
            timeout_s=60.0,
            what="the cells' voltages",
        )  # fmt: skip
        assert _console_errors(browser) == []
        _screenshots(browser, tmp_path / "screenshots", "cells-255")
        assert process.stop() == 0


TWO_PACKS = """
[[pack]]
id = "north"
chemistry = "LiFePO4"
cells = 8
capacity_wh = 2560
pin = "4321"

[pack.source]
kind = "emulator"
true_soc_pct = 40

[[pack]]
id = "south"
chemistry = "LiFePO4"
cells = 8
capacity_wh = 2560
pin = "4321"

[pack.source]
kind = "emulator"
true_soc_pct = 70
seed = 1

[store]
path = "state.json"

[modbus]
port = {port}

[can]
enabled = false

[web]
port = {web_port}
"""


def test_each_pack_has_a_tab_and_the_fleet_one_agrees_with_the_fleet_unit(
    browser: WebDriver, tmp_path: Path
) -> None:
    port, web_port = free_port(), free_port()
    config = tmp_path / "twin.toml"
    config.write_text(TWO_PACKS.format(port=port, web_port=web_port), encoding="utf-8")
    with TwinProcess(config) as process:
        process.wait_for_message("web: the dashboard is on")
        _open(browser, f"http://127.0.0.1:{web_port}/")
        wait_until(
            lambda: (
                [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#tabs button")]
                == ["north", "south", "fleet"]
            ),
            what="a tab per pack and the fleet",
        )
        browser.find_element(By.CSS_SELECTOR, '#tabs button[data-pack="fleet"]').click()

        def fleet_agrees() -> bool:
            soc = _number(str(_page(browser)["soc"]))
            with RawModbus(port) as raw:
                registers = raw.read_holding(100, 110, 1)  # the fleet unit's SOC
            assert isinstance(registers, list)
            return soc is not None and abs(soc - registers[0] / 10.0) <= 0.051

        wait_until(fleet_agrees, what="the fleet's SOC equal to the fleet unit's")
        assert browser.find_element(By.ID, "cells-card").is_displayed() is False
        assert _console_errors(browser) == []
        assert process.stop() == 0


REPLAY = """
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = 16
capacity_wh = 5120

[pack.source]
kind = "replay"
file = "{file}"

[store]
path = "state.json"

[modbus]
port = {port}

[can]
enabled = false

[web]
port = {web_port}
"""


def test_markup_from_a_replayed_capture_is_shown_as_text(
    browser: WebDriver, tmp_path: Path
) -> None:
    # The UART carries no free text (its firmware and counters are numbers): what a capture
    # brings to the page as text is its name, in the source's log lines.
    name = "<img src=x id=injected>.cap"
    with CaptureWriter(tmp_path / name, port="<b>usb</b>", baudrate=9600) as capture:
        for n, frame in enumerate(frame_stream(20)):
            capture.write(Chunk(frame, float(n)))
    port, web_port = free_port(), free_port()
    config = tmp_path / "twin.toml"
    config.write_text(REPLAY.format(file=name, port=port, web_port=web_port), encoding="utf-8")
    with TwinProcess(config) as process:
        process.wait_for_message("web: the dashboard is on")
        _open(browser, f"http://127.0.0.1:{web_port}/")
        wait_until(
            lambda: name in str(browser.execute_script(
                "return document.getElementById('events').textContent")),
            what="the capture's name in the events, as text",
        )  # fmt: skip
        assert browser.execute_script("return document.getElementById('injected')") is None
        assert browser.execute_script("return document.querySelectorAll('#events img').length") == 0
        assert _console_errors(browser) == []
        assert process.stop() == 0
