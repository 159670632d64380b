"""report.html in a real browser (issue 13): headless Chromium from Debian packages, driven by Playwright.

The page is opened from file:// with every request routed: anything but file: and data: fails the test (the
report must be readable offline). It checks the verdict banner, the plain-words explanation of each failed
check, that the plotly figures are drawn (and answer a hover), and that the console stays free of errors. A
screenshot goes to the test's tmp folder, and also to $TABTWIN_SCREENSHOT when set, for a person to look at.

Skips only when Chromium (/usr/bin/chromium, or $TABTWIN_CHROMIUM) or Playwright is absent; .ci/run installs
both (apt-get install chromium; playwright with the test extras). `playwright install` is never needed: the
Debian browser is launched by path.
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_correlated_table
from tabtwin.evaluation.explain import explain_failure
from tabtwin.evaluation.report import evaluate, write_report
from tabtwin.pipeline.schema import infer_schema

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("TABTWIN_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SCREENSHOT = os.environ.get("TABTWIN_SCREENSHOT")  # a path to keep the page's screenshot at, or None


@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's entry point, or a skip saying what is missing (before the report is built)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]' brings it)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does)")
    return sync_playwright


@pytest.fixture(scope="module")
def report(sync_playwright, tmp_path_factory):
    """A small failing report: a fresh draw whose columns are shuffled apart (pair trends and utility fail) and
    a few ages below the real range (a data contract fails)."""
    table = make_correlated_table(900, seed=3)
    train, holdout = table.iloc[:600].reset_index(drop=True), table.iloc[600:].reset_index(drop=True)
    rng = np.random.default_rng(0)
    synthetic = pd.DataFrame({c: rng.permutation(train[c].to_numpy()) for c in train.columns})
    synthetic.loc[:19, "age"] = 5
    schema = infer_schema(train)
    results = evaluate(train, holdout, synthetic, schema, target="segment",
                       run={"kind": "request", "model": "tvae", "registry_entry": "demo@1", "rows": len(synthetic)})
    assert not results["gate"]["passed"]
    paths = write_report(results, tmp_path_factory.mktemp("report"), train, synthetic, schema)
    return json.loads(paths["json"].read_text()), paths["html"]


def test_report_reads_offline_in_chromium(sync_playwright, report, tmp_path):
    results, html = report
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def route(route):
                requests.append(route.request.url)
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    route.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)

            failures = results["gate"]["failures"]
            verdict = page.inner_text("#verdict")
            assert re.sub(r"\s+", " ", verdict).strip() == (f"Gate FAILED: {len(failures)} check(s) failed; "
                                                             "the synthetic table was withheld")
            shown = [re.sub(r"\s+", " ", text) for text in page.locator("li.failure").all_inner_texts()]
            assert len(shown) == len(failures)
            for check, text in zip(failures, shown):
                assert re.sub(r"\s+", " ", explain_failure(check, results)) in text, (check["check"], text)
            assert "produced by" in page.inner_text("#run") and "demo@1" in page.inner_text("#run")

            # Every figure drawn (an SVG inside each plotly div), and one answers a hover with its numbers.
            drawn = page.locator(".js-plotly-plot").count()
            assert drawn >= 5
            assert page.locator(".js-plotly-plot").evaluate_all(
                "divs => divs.every(d => d.querySelector('svg.main-svg') !== null)")
            # plotly's drag layer sits over the bars, so move the mouse to a bar instead of hovering the element.
            page.locator("#column-0").scroll_into_view_if_needed()
            box = page.locator("#column-0 .bars path").first.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + 1, steps=4)
            page.wait_for_selector("#column-0 .hoverlayer .hovertext", state="attached", timeout=5_000)
            assert "of rows" in page.text_content("#column-0 .hoverlayer")

            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            if SCREENSHOT:
                shutil.copyfile(tmp_path / "report.png", SCREENSHOT)
        finally:
            browser.close()
    assert not errors, errors
    outside = [url for url in requests if not url.startswith(("file:", "data:"))]
    assert not outside, f"the report reached for the network: {outside}"
