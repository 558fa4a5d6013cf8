"""Headless system Chromium through Selenium, and what the browser tests measure with it.

Selenium cannot download a browser here: it is pointed at Debian's ``chromium`` and ``chromium-driver`` (``make
system-deps`` installs both). A missing browser fails the tests, naming that target; it never skips them.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1600, 1000)
CSS, XPATH = "css selector", "xpath"  # selenium's By.CSS_SELECTOR and By.XPATH, usable before it is imported


def chrome(window: tuple[int, int] = WINDOW) -> Any:
    """A headless Chromium that keeps its console log (``driver.get_log("browser")``)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"no {' and no '.join(missing)}: the browser tests need Debian's chromium and chromium-driver; "
                    "`make system-deps` installs them.", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install 'bap-sweeps[ui]' (`make install` does).", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={window[0]},{window[1]}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver


def severe(entries: list[dict[str, Any]], ignore: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The console entries at level SEVERE (JavaScript errors, failed loads) whose message has none of ``ignore``."""
    return [e for e in entries if e.get("level") == "SEVERE" and not any(s in e.get("message", "") for s in ignore)]


def wait_for(driver: Any, condition: Any, timeout: float = 60, message: str = "") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition, message)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.load(reply)


# What a page loaded, and from where: every resource the browser fetched, and every element that points at one.
LOADED_JS = """
const urls = performance.getEntriesByType('resource').map(e => e.name);
for (const e of document.querySelectorAll('script[src], link[href], img[src], iframe[src], source[src]')) {
  urls.push(e.src || e.href);
}
return urls;
"""

# Bounding boxes of a plotly figure's parts: its title, legend, the drop-down (closed) and the modebar.
BOXES_JS = """
const box = sel => [...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect())
  .filter(r => r.width > 0 && r.height > 0).map(r => [r.left, r.top, r.right, r.bottom]);
return {title: box('.gtitle'), legend: box('.legend'), menu: box('.updatemenu-header-group'),
        modebar: box('.modebar'), xtitle: box('.g-xtitle, .g-x2title')};
"""

# Show each target of the page's drop-down (what a click on its entry does), then call back with the boxes of
# each: [label, boxes] pairs.
EACH_TARGET_JS = """
const done = arguments[arguments.length - 1];
const gd = document.getElementById(arguments[0]);
const boxes = new Function(arguments[1]);
(async () => {
  const out = [];
  for (const b of gd.layout.updatemenus[0].buttons) {
    await Plotly.update(gd, b.args[0], b.args[1]);
    out.push([b.label, boxes()]);
  }
  await Plotly.update(gd, gd.layout.updatemenus[0].buttons[0].args[0], gd.layout.updatemenus[0].buttons[0].args[1]);
  done(out);
})().catch(e => done(String(e)));
"""


def overlap(a: list[float], b: list[float]) -> bool:
    """Whether two boxes ``[left, top, right, bottom]`` share any area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def overlaps(boxes: dict[str, list[list[float]]], pairs: list[tuple[str, str]]) -> list[str]:
    """The named pairs of parts whose boxes overlap, described."""
    return [f"{x} {a} overlaps {y} {b}" for x, y in pairs for a in boxes.get(x, []) for b in boxes.get(y, [])
            if overlap(a, b)]
