"""The panel in a real browser: JupyterLab, a kernel with the extension, Chromium.

Opens a notebook whose cells load the extension, define two tasks and open the panel;
checks that the table shows both tasks, that "run now" raises a run count, that "disable"
changes a badge, that task output is shown as text (never as markup); saves a screenshot of
the panel to ``test-artifacts/panel.png``. Every wait is on page state, never a sleep.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from rnb_lab import CHROMIUM, CHROMIUM_FLAGS, REPO, Lab

pytestmark = [pytest.mark.slow, pytest.mark.browser]

XSS = "<img src=x onerror=alert(1)>"
KERNEL_IDLE = re.compile(r"Python 3.*\| Idle")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))

CELLS = [
    "%load_ext redengine_nb",
    # Two tasks: each runs once when the scheduler sees it, then not again for a while.
    "from redengine_nb.notebook import get_app\n"
    "app = get_app()\n"
    "\n"
    "@app.task('every 1 hour')\n"
    "def fetch_prices():\n"
    "    print('fetched 42 prices')\n"
    "\n"
    "@app.task('daily')\n"
    "def send_report():\n"
    f"    print({XSS!r})",
    "%scheduler panel",
]


def write_notebook(root: Path) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbformat.write(nb, root / "panel.ipynb")
    return "panel.ipynb"


def outputs_text(page: Any) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())


def test_panel_in_jupyterlab(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    name = write_notebook(lab.root)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            page.goto(lab.url(f"lab/tree/{name}"))
            # The execution indicator says idle before a kernel exists: wait for the
            # status bar to name the kernel and call it idle.
            kernel_idle = page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE)
            expect(kernel_idle).to_be_visible(timeout=90_000)
            prompts = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt")
            for index in range(len(CELLS)):
                page.locator(".jp-Cell .jp-InputArea-editor").nth(index).click()
                page.keyboard.press("Shift+Enter")
                expect(prompts.nth(index)).to_have_text(re.compile(r"\[\d+\]:"), timeout=60_000)

            panel = page.locator(".rnb-panel")
            try:
                expect(panel).to_be_visible(timeout=60_000)
            except AssertionError:
                raise AssertionError(
                    f"no panel; cell outputs:\n{outputs_text(page)}\n{lab.log_tail()}"
                ) from None
            fetch = panel.locator('tr[data-task="fetch_prices"]')
            report = panel.locator('tr[data-task="send_report"]')
            expect(fetch).to_be_visible()
            expect(report).to_be_visible()
            expect(panel.locator(".rnb-scheduler-state")).to_have_text("Scheduler: running")

            # Each ran once by itself; "run now" makes it twice.
            expect(fetch.locator(".rnb-runs-count")).to_have_text("1", timeout=30_000)
            expect(fetch.locator(".rnb-badge")).to_have_text("success")
            fetch.locator('button[data-action="run"]').click()
            expect(fetch.locator(".rnb-runs-count")).to_have_text("2", timeout=30_000)

            # Disabling changes the badge and the button.
            expect(report.locator(".rnb-badge")).to_have_text("success", timeout=30_000)
            report.locator('button[data-action="toggle"]').click()
            expect(report.locator(".rnb-badge")).to_have_text("disabled", timeout=30_000)
            expect(report.locator('button[data-action="toggle"]')).to_have_text("enable")

            # A bad condition is shown beside the field and changes nothing.
            field = fetch.locator(".rnb-cond-input")
            field.fill("every 1 hour &")
            fetch.locator('button[data-action="condition"]').click()
            expect(fetch.locator(".rnb-cond-error")).to_contain_text("every 1 hour &")
            expect(field).to_have_value("every 1 hour &")  # the typed text stays to be fixed
            expect(fetch.locator(".rnb-runs-count")).to_have_text("2")
            field.fill("every 2 hours")
            field.press("Enter")
            expect(fetch.locator(".rnb-cond-error")).to_be_empty()
            expect(field).to_have_value(re.compile(r"every 2 hours?"))

            # The selected task's runs show its output as text, not as an element.
            report.locator(".rnb-name").click()
            output = panel.locator(".rnb-runs .rnb-output").first
            expect(output).to_have_text(XSS + "\n", timeout=30_000)
            assert panel.locator("img").count() == 0
            assert dialogs == []

            # The timeline has a bar per run.
            expect(panel.locator(".rnb-timeline .rnb-bar")).to_have_count(3, timeout=30_000)
            panel.screenshot(path=str(ARTIFACTS / "panel.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "panel-failure.png"), full_page=True)
            raise
        finally:
            context.close()
            browser.close()
