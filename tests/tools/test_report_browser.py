"""The HTML report in a real browser: Debian's headless chromium, driven by selenium.

Skipped with the reason when chromium, chromedriver or selenium is missing, unless
``CI`` is set: then it fails, so CI cannot pass without running it. Install with
``.ci/install_browser.sh``. Saves a screenshot in the test's temporary folder, or in
the folder ``MGPO_SCREENSHOT_DIR`` names (the README's picture was made that way).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import gymnasium as gym
import pytest

import mgpo_env  # noqa: F401  (registers the environment)
from mgpo_tools.episode_store import EpisodeStore
from mgpo_tools.recording import play_episodes
from mgpo_tools.report import CHROMIUM_FLAGS, ReportOptions, build_report
from mgpo_tools.scripted_policies import OracleBoxPolicy, RandomPolicy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_NAME = "report_screenshot.png"
PAGE_SIZE = 4


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _executable(path: Optional[str]) -> Optional[str]:
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def find_chromium() -> Optional[str]:
    """``$CHROME_BIN`` if set (even to nothing usable: then the test reports it missing), else Debian's chromium."""
    if "CHROME_BIN" in os.environ:
        return _executable(os.environ["CHROME_BIN"])
    return _executable(shutil.which("chromium") or shutil.which("chromium-browser"))


def find_chromedriver() -> Optional[str]:
    """``$CHROMEDRIVER`` if set, else Debian's chromedriver (chromium-driver)."""
    if "CHROMEDRIVER" in os.environ:
        return _executable(os.environ["CHROMEDRIVER"])
    return _executable(shutil.which("chromedriver")) or _executable("/usr/lib/chromium/chromedriver")


def start_chromium(width: int = 1400, height: int = 1900):
    """A headless Debian chromium under selenium, logging the page's console; skip or fail if absent."""
    missing = []
    if find_chromium() is None:
        missing.append("chromium (apt-get install chromium)")
    if find_chromedriver() is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install selenium)")
    if missing:
        reason = "the browser test needs " + ", ".join(missing) + "; run .ci/install_browser.sh"
        if in_ci():
            pytest.fail(reason + " (CI is set, so a missing browser is an error, not a skip)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = find_chromium()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='mgpo-chromium-')}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager never tries to download a browser or driver.
    return webdriver.Chrome(options=options, service=Service(executable_path=find_chromedriver()))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A run of 14 scripted episodes of the synthetic task (small settings) and its report."""
    run_dir = tmp_path_factory.mktemp("browser_run")
    store = EpisodeStore(run_dir / "episodes", fsync=False)
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 20, "canvas_size": 1024}, render_mode="rgb_array")
    play_episodes(env, OracleBoxPolicy(seed=0), store, episodes=6, seed=0)
    play_episodes(env, RandomPolicy(seed=0), store, episodes=5, seed=50, split="train", step=20)
    invalid = lambda obs, info: "[1, 1, 4, 4]" if obs["turn"] == 0 else "\\boxed{A}"  # noqa: E731
    play_episodes(env, invalid, store, episodes=3, seed=70)
    env.close()
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(40):
            f.write(json.dumps({"step": step, "reward_mean": 0.2 + step / 80, "accuracy": 0.25 + step / 100, "valid_box_rate": min(1.0, 0.6 + step / 50), "kl": step / 1000}) + "\n")
    output = run_dir / "report.html"
    build_report(run_dir, output, ReportOptions(page_size=PAGE_SIZE, title="Synthetic task: 14 scripted episodes"))
    records = store.load()
    assert 0 < sum(bool(r.correct) for r in records) < len(records), "the scripted run should have both outcomes"
    return {"path": output, "records": records}


@pytest.fixture(scope="module")
def browser():
    """Chromium first: when it is missing the test skips (or fails in CI) before playing any episode."""
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, report):
    browser.get(report["path"].resolve().as_uri())
    wait_ready(browser)
    return browser


def wait_ready(driver) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def choose(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def shown_across_pages(driver) -> list[str]:
    """Episode ids of every page of the current filter, clicking "next" to the end."""
    from selenium.webdriver.common.by import By

    ids: list[str] = []
    assert driver.execute_script("return document.body.dataset.page") == "1"  # a filter change starts at page 1
    pages = int(driver.execute_script("return document.body.dataset.pages"))
    for number in range(1, pages + 1):
        cards = driver.find_elements(By.CSS_SELECTOR, "#episodes article.episode")
        assert 1 <= len(cards) <= PAGE_SIZE or (not cards and pages == 1)
        ids += [card.get_attribute("data-id") for card in cards]
        button = driver.find_element(By.ID, "next")
        if number < pages:
            button.click()
        else:
            assert not button.is_enabled()
    return ids


def matching(driver) -> int:
    return int(driver.execute_script("return document.getElementById('count').dataset.matching"))


def test_page_loads_without_console_errors(page):
    assert console_errors(page) == []
    assert page.title.endswith("mgpo report")
    # Every picture of the first page decoded, and the metric charts too.
    broken = page.execute_script("return Array.from(document.images).filter(i => i.src && !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0
    assert page.execute_script("return document.querySelectorAll('.chart img').length") == 4


def test_every_episode_is_shown_once_across_pages(page, report):
    choose(page, "f-correct", "all")
    ids = shown_across_pages(page)
    assert ids == [r.episode_id for r in report["records"]]
    assert matching(page) == len(report["records"]) == 14


def test_filters_change_what_is_shown(page, report):
    from selenium.webdriver.common.by import By

    records = report["records"]
    correct = [r.episode_id for r in records if r.correct]
    choose(page, "f-correct", "correct")
    assert matching(page) == len(correct)
    assert shown_across_pages(page) == correct
    assert all("correct" in c.get_attribute("class").split() for c in page.find_elements(By.CSS_SELECTOR, "article.episode"))

    choose(page, "f-correct", "incorrect")
    assert shown_across_pages(page) == [r.episode_id for r in records if not r.correct]

    choose(page, "f-correct", "all")
    choose(page, "f-box", "invalid")
    assert shown_across_pages(page) == [r.episode_id for r in records if r.box_valid is False]
    assert matching(page) == 3

    choose(page, "f-box", "all")
    choose(page, "f-split", "train")
    assert shown_across_pages(page) == [r.episode_id for r in records if r.split == "train"]

    category = records[0].category
    choose(page, "f-split", "all")
    choose(page, "f-category", category)
    assert shown_across_pages(page) == [r.episode_id for r in records if r.category == category]

    choose(page, "f-category", "all")
    search = page.find_element(By.ID, "f-text")
    from selenium.webdriver.support.ui import WebDriverWait

    query = records[3].sample_id
    search.send_keys(query)
    expected = [r.episode_id for r in records if query in r.sample_id]  # a substring search ("-1" also finds "-11")
    WebDriverWait(page, 5).until(lambda d: matching(d) == len(expected))
    assert shown_across_pages(page) == expected
    search.clear()
    search.send_keys(" ")  # an input event with an empty query: back to everything
    WebDriverWait(page, 5).until(lambda d: matching(d) == len(records))
    assert console_errors(page) == []


def test_transcript_opens_and_screenshot(page, report, tmp_path_factory):
    from selenium.webdriver.common.by import By

    for select_id in ("f-correct", "f-box", "f-category", "f-split"):
        choose(page, select_id, "all")
    from selenium.webdriver.support.ui import WebDriverWait

    first = page.find_element(By.CSS_SELECTOR, "article.episode")
    first.find_element(By.CSS_SELECTOR, "details summary").click()
    # <details> fires "toggle" asynchronously; the transcript is built then.
    WebDriverWait(page, 5).until(lambda d: first.find_elements(By.CSS_SELECTOR, ".msg"))
    messages = first.find_elements(By.CSS_SELECTOR, ".msg")
    assert [m.find_element(By.CSS_SELECTOR, ".role").text.lower() for m in messages] == [m.role for m in report["records"][0].messages]
    assert report["records"][0].generations[0].splitlines()[0] in first.text
    # Clicking a picture enlarges it; clicking again closes it.
    first.find_element(By.CSS_SELECTOR, "figure.orig img").click()
    assert page.find_element(By.ID, "zoom").is_displayed()
    page.find_element(By.ID, "zoom").click()
    assert not page.find_element(By.ID, "zoom").is_displayed()
    assert console_errors(page) == []

    page.execute_script("window.scrollTo(0, 0)")
    folder = Path(os.environ.get("MGPO_SCREENSHOT_DIR", "") or tmp_path_factory.mktemp("screenshot"))
    folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / SCREENSHOT_NAME
    assert page.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
