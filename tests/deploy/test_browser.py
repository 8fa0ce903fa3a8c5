"""A real browser on the auditor UI: headless Chromium (Debian's chromium + chromium-driver, driven by selenium)
opens the read-only webserver, the use case's asset group lineage, the production model's lineage and its event
history, checks the asset names and the promoting run are shown, and saves screenshots
(deploy/screenshots/, ignored by git, and the test's tmp folder)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY

pytestmark = pytest.mark.postgres

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000"]


def browser_binaries() -> tuple[str, str]:
    def find():
        return shutil.which("chromium"), shutil.which("chromedriver")

    chromium, driver = find()
    if not (chromium and driver):
        done = subprocess.run(["bash", str(DEPLOY / "scripts" / "ensure-test-tools.sh")], capture_output=True,
                              text=True, timeout=900)
        chromium, driver = find()
        if not (chromium and driver):
            pytest.skip("chromium/chromedriver could not be installed here (deploy/scripts/ensure-test-tools.sh):\n"
                        f"{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(60)
    try:
        yield session
    finally:
        session.quit()


def show(browser, url: str, expected: list[str], timeout: float = 60) -> str:
    """Open `url` and wait until every expected text is visible and nothing is still loading."""
    browser.get(url)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = browser.find_element("tag name", "body").text
        if all(e in text for e in expected) and "Loading" not in text:
            dismiss_welcome_dialog(browser)
            time.sleep(0.5)  # let the graph finish laying out before the screenshot
            return browser.find_element("tag name", "body").text
        time.sleep(0.5)
    missing = [e for e in expected if e not in text]
    raise AssertionError(f"{url}: {missing} not shown after {timeout} s; page text:\n{text[:2000]}")


def dismiss_welcome_dialog(browser) -> None:
    """The UI greets a new browser profile with a community dialog over the page: skip it."""
    for button in browser.find_elements("xpath", "//div[@role='dialog']//button[normalize-space()='Skip']"):
        button.click()
        time.sleep(0.3)


def screenshot(browser, name: str, tmp_path: Path) -> Path:
    folder = DEPLOY / "screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    assert browser.save_screenshot(str(path))
    shutil.copy(path, tmp_path / path.name)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one
    return path


def test_auditor_sees_lineage_and_model_history_in_a_real_browser(browser, auditor_url, history, tmp_path):
    # A use case's assets are one group named after it; its training stage is the assets tagged stage=training.
    training = urllib.parse.quote('tag:"stage"="training"', safe="")
    text = show(browser, f"{auditor_url}/locations/ml-platform/asset-groups/flight_delay/lineage~{training}/",
                ["training_set", "candidate_model"])
    assert "Materialized" in text
    screenshot(browser, "training-lineage", tmp_path)

    # Its nearest neighbours: the promotion decision it follows, the predictions it serves.
    text = show(browser, f"{auditor_url}/assets/flight_delay/production_model?view=lineage",
                ["production_model", "promotion_decision", "predictions"])
    screenshot(browser, "production-model-lineage", tmp_path)

    promoted = history["runs"]["train"][:8]
    text = show(browser, f"{auditor_url}/assets/flight_delay/production_model?view=events",
                ["production_model", f"Materialized in run {promoted}", "model_version"])
    assert "promote" in text
    screenshot(browser, "production-model-history", tmp_path)


def open_markdown(browser, label: str) -> None:
    """Click the `[Show Markdown]` action of the newest event's metadata entry `label`."""
    rows = browser.find_elements("xpath", f"//tr[td[normalize-space()='{label}']]")
    assert rows, f"no metadata entry {label!r} on the page"
    link = rows[0].find_element("xpath", ".//a[contains(., 'Show Markdown')]")
    dismiss_welcome_dialog(browser)
    browser.execute_script("arguments[0].click()", link)


def rendered_images(browser, timeout: float = 30) -> list:
    """Images in the open dialog that the browser actually decoded (naturalWidth > 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        images = [i for i in browser.find_elements("xpath", "//div[@role='dialog']//img")
                  if int(i.get_attribute("naturalWidth") or 0) > 0]
        if images:
            return images
        time.sleep(0.5)
    return []


def assert_plot_shown(browser, label: str, shot: str, tmp_path: Path) -> None:
    """Open metadata entry `label`'s Markdown and check the browser decoded a full-width plot in it."""
    open_markdown(browser, label)
    images = rendered_images(browser)
    assert images and int(images[0].get_attribute("naturalWidth")) >= 600
    browser.execute_script("arguments[0].scrollIntoView()", images[0])
    time.sleep(0.5)
    screenshot(browser, shot, tmp_path)


def test_model_card_and_evaluation_plot_are_rendered_not_pointed_at(browser, auditor_url, history, tmp_path):
    show(browser, f"{auditor_url}/assets/flight_delay/promotion_decision?view=events",
         ["promotion_decision", "model_card"])
    open_markdown(browser, "model_card")
    images = rendered_images(browser)
    dialog = browser.find_element("xpath", "//div[@role='dialog']").text
    assert "Model card:" in dialog and "Promotion decision" in dialog, dialog[:1500]
    assert images and images[0].get_attribute("src").startswith("data:image/png;base64,")
    browser.execute_script("arguments[0].scrollIntoView()", images[0])
    time.sleep(0.5)
    screenshot(browser, "model-card-plot", tmp_path)

    show(browser, f"{auditor_url}/assets/flight_delay/model_evaluation?view=events", ["model_evaluation", "report"])
    assert_plot_shown(browser, "report", "evaluation-report-plot", tmp_path)


def test_the_policy_backtest_plot_is_rendered(browser, auditor_url, history, tmp_path):
    assert history["success"]["backtest"], history
    show(browser, f"{auditor_url}/assets/flight_delay/policy_backtest?view=events",
         ["policy_backtest", "monthly_auroc", "plot"])
    assert_plot_shown(browser, "plot", "policy-backtest-plot", tmp_path)


def test_monitoring_figures_are_plotted_by_partition(browser, auditor_url, history, tmp_path):
    """Open-source Dagster 1.13 has no metadata plots tab: the realized AUROC of every scored partition
    against its promise is drawn by partition (data time) in the backtest's materialization."""
    assert history["success"]["daily"], history
    show(browser, f"{auditor_url}/assets/flight_delay/policy_backtest?view=events",
         ["policy_backtest", "monitoring_plot"])
    assert_plot_shown(browser, "monitoring_plot", "monitoring-by-partition-plot", tmp_path)


def test_runs_are_links_on_the_model_pages(browser, auditor_url, history, tmp_path):
    show(browser, f"{auditor_url}/assets/flight_delay/production_model?view=events",
         ["production_model", "trained_by_run"])
    row = browser.find_elements("xpath", "//tr[td[normalize-space()='trained_by_run']]")[0]
    hrefs = [a.get_attribute("href") for a in row.find_elements("tag name", "a")]
    trained = history["runs"]["train"]
    assert any(h and f"/runs/{trained}" in h for h in hrefs), (hrefs, row.get_attribute("outerHTML")[:800])
    screenshot(browser, "production-model-run-links", tmp_path)
