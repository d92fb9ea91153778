"""A real browser on the Space: headless Chromium (Debian's `chromium` + `chromium-driver`) via Selenium.

The test setup installs the two Debian packages with apt-get when they are missing (root only); the
test skips, saying why, only where they cannot be installed. It loads the page, runs a steer with a
large strength through the UI, checks both columns filled and differ, and saves a screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_space import served, tiny  # noqa: F401  (fixtures: the tiny-model Space on 127.0.0.1)

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1400,1800",
)  # fmt: skip


def _install_chromium() -> str | None:
    """Install Debian's chromium and chromium-driver if missing; return why it cannot, or None."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    if shutil.which("apt-get") is None:
        return "Chromium is missing and this system has no apt-get to install it"
    if os.geteuid() != 0:
        return "Chromium is missing and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _type(element, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(value)


def steer_in_browser(driver, url: str, *, prompt: str, feature: int, strength: float) -> tuple[str, str]:
    """Open the Space, steer `feature` at `strength` on the Steer tab; return the settled (default, steered)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 60)
    tab = wait.until(ec.element_to_be_clickable((By.XPATH, "//button[@role='tab' and contains(., 'Steer')]")))
    tab.click()
    _type(
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#steer-feature-0 input"))),
        str(feature),
    )
    _type(driver.find_element(By.CSS_SELECTOR, "#steer-strength-0 input[type='number']"), str(strength))
    _type(driver.find_element(By.CSS_SELECTOR, "#steer-prompt textarea"), prompt)
    driver.find_element(By.ID, "steer-run").click()
    seen: list[tuple[str, ...]] = []

    def both_columns_settled(d):
        texts = tuple(
            d.find_element(By.CSS_SELECTOR, f"#steer-{name} textarea").get_attribute("value")
            for name in ("default", "steered")
        )
        seen.append(texts)
        return texts if all(texts) and seen[-3:] == [texts] * 3 else False  # unchanged for a second

    return WebDriverWait(driver, 300, poll_frequency=0.5).until(both_columns_settled)


def test_steer_in_the_browser(served, browser, tmp_path):  # noqa: F811
    client, _ = served
    default, steered = steer_in_browser(browser, client.src, prompt="Hi there", feature=3, strength=400)
    assert default != steered
    shot = tmp_path / "space_steer.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
