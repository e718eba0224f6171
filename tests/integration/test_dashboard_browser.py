"""The dashboard in a real browser (Debian's headless Chromium through selenium) against a real ``qwq up``.

Checks what only a browser shows: the Dash renderer builds the pages, callbacks fill them, the navigation
works, and the browser console stays free of errors.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwq_core.collector import samples
from qwq_core.store.remote import RemoteStore
from qwq_core.timeutil import utcnow
from tests.integration.conftest import Server, start_server

pytestmark = [pytest.mark.service, pytest.mark.slow]
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WEB = {"container": "shop-web-1", "image": "nginx:1.27", "host": socket.gethostname()}  # qwq's default host


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("browser") / "home")
    with RemoteStore(running.url) as remote:  # a container as the containers collector would report it
        remote.write(
            samples(
                utcnow(),
                [
                    ("container_up", WEB, 1.0),
                    ("container_cpu_usage_ratio", WEB, 0.12),
                ],
            )
        )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def wait_for_text(driver: webdriver.Chrome, css: str, text: str, timeout: float = 30) -> None:
    WebDriverWait(driver, timeout).until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))


def test_host_overview_renders_graphs_and_tiles(server: Server, browser: webdriver.Chrome, tmp_path: Path) -> None:
    browser.get(server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#cpu-busy .main-svg"))
    wait_for_text(browser, "#tile-cpu", "%")
    assert browser.find_element(By.CSS_SELECTOR, ".qwq-page").text == "host overview"
    assert browser.save_screenshot(str(tmp_path / "overview.png"))
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_navigation_reaches_the_containers_table_and_its_drill_down(server: Server, browser: webdriver.Chrome) -> None:
    browser.get(server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.LINK_TEXT, "Containers"))
    browser.find_element(By.LINK_TEXT, "Containers").click()
    wait_for_text(browser, "#fleet-table", "shop-web-1")
    assert "nginx:1.27" in browser.find_element(By.ID, "fleet-table").text
    browser.find_element(By.LINK_TEXT, "shop-web-1").click()
    WebDriverWait(browser, 30).until(lambda d: "target=container" in d.current_url)
    wait_for_text(browser, "#fleet-detail", "CPU")
    for path, title in (("/alerts", "Firing"), ("/capacity", "What runs out first")):
        browser.get(server.url + path)
        wait_for_text(browser, ".qwq-main", title)
