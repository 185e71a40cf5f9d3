"""The notebook as people use it, in a real browser: JupyterLab, a kernel, Chromium.

One JupyterLab server for the module. ``test_panel_in_jupyterlab`` opens a notebook whose
cells load the extension, define tasks (one prints markup, one displays HTML, one fails,
one blocks until a cell releases it, one waits for a task that does not exist) and open the
panel; it clicks through every control and checks what a person would see, then restarts
the kernel and checks that the old panel says so. ``test_quickstart_in_jupyterlab`` opens
``notebooks/quickstart.ipynb`` unmodified and runs it. Every wait is on page state, never a
sleep (except the two fixed windows in which nothing may change, which is what they test).

Screenshots go to ``$TEST_ARTIFACTS`` (default ``test-artifacts/``); with
``REDENGINE_NB_DOCS_SCREENSHOTS=1`` they are written to ``docs/`` (the README's picture and
the ones docs/panel.md shows).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from rnb_lab import CHROMIUM, CHROMIUM_FLAGS, REPO, Lab

pytestmark = [pytest.mark.slow, pytest.mark.browser]

XSS = "<img src=x onerror=alert(1)>"
KERNEL_IDLE = re.compile(r"Python 3.*\| Idle")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))
DOCS = REPO / "docs" if os.environ.get("REDENGINE_NB_DOCS_SCREENSHOTS") else ARTIFACTS

CELLS = [
    "%load_ext redengine_nb",
    "import threading\n"
    "from IPython.display import HTML, display\n"
    "from redengine_nb.notebook import get_app\n"
    "app = get_app()\n"
    "release = threading.Event()\n"
    "\n"
    "@app.task('every 1 hour')\n"
    "def fetch_prices():\n"
    "    print('fetched 42 prices')\n"
    "\n"
    "@app.task('daily')\n"
    "def send_report():\n"
    f"    print({XSS!r})\n"
    "\n"
    "@app.task('every 1 hour')\n"
    "def rich_report():\n"
    "    display(HTML(\"<b id='rich-bold'>a bold claim</b>\"))\n"
    "\n"
    "from distributed import LocalCluster\n"
    "cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,\n"
    "                       protocol='tcp://', host='127.0.0.1', dashboard_address=':0')\n"
    "app.config.dask_address = cluster.scheduler_address\n"
    "\n"
    "@app.task('every 1 hour', execution='dask')\n"
    "def on_dask():\n"
    "    return 42",
    "%%task every 1 hour --name slow\nprint('halfway')\nrelease.wait(120)",
    "%%task every 1 hour --name boom\nx = 1\nraise ValueError('boom in the cell')",
    "%%task after task 'nope' --name waiter\nprint('never')",
    "%scheduler panel",
    "release.set()",
    "from redengine_nb import RedEngine\n"
    "other = RedEngine(logs=app.runlog.location)  # a second scheduler on this log\n"
    "other_lease = other.session.owner",
    "import time\n"
    "# As if the clock had read a day ahead before it was set right: a clock step.\n"
    "app.session.clock_guard.see(time.time() + 86_400)\n"
    "app.session.wake.set()",
]
SETUP_CELLS = 6  # run at the start; the last one later, to let 'slow' finish


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_notebook(browser: Any, lab: Lab, name: str, size: tuple[int, int]) -> tuple[Any, Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(lab.url(f"lab/tree/{name}?reset"))  # no tabs kept from an earlier test
    # The execution indicator says idle before a kernel exists: wait for the status bar
    # to name the kernel and call it idle.
    expect(page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE)).to_be_visible(
        timeout=90_000
    )
    return context, page


def run_cell(page: Any, index: int) -> None:
    from playwright.sync_api import expect

    page.locator(".jp-Cell .jp-InputArea-editor").nth(index).click()
    page.keyboard.press("Shift+Enter")
    prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").nth(index)
    expect(prompt).to_have_text(re.compile(r"\[\d+\]:"), timeout=60_000)


def mutations(page: Any, selector: str, ms: int, *, hidden: bool = False) -> dict[str, int]:
    """Count DOM changes under ``selector`` for ``ms`` milliseconds (``hidden``: as if the
    tab were in the background)."""
    return dict(
        page.evaluate(
            """async ([selector, ms, hidden]) => {
                const root = document.querySelector(selector);
                if (hidden) {
                    Object.defineProperty(
                        document, "hidden", { configurable: true, get: () => true });
                }
                const counts = { childList: 0, characterData: 0, attributes: 0 };
                const observer = new MutationObserver((list) => {
                    for (const m of list) counts[m.type] += 1;
                });
                observer.observe(root, { subtree: true, childList: true, characterData: true,
                                         attributes: true });
                await new Promise((resolve) => setTimeout(resolve, ms));
                observer.disconnect();
                if (hidden) delete document.hidden;
                return counts;
            }""",
            [selector, ms, hidden],
        )
    )


def restart_kernel(lab: Lab, notebook: str) -> None:
    """What Kernel > Restart does: the server restarts the notebook's kernel."""
    with urllib.request.urlopen(lab.url("api/sessions"), timeout=10) as resp:
        sessions = json.load(resp)
    (kernel_id,) = [s["kernel"]["id"] for s in sessions if s["path"].endswith(notebook)]
    request = urllib.request.Request(lab.url(f"api/kernels/{kernel_id}/restart"), method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 200


def test_panel_in_jupyterlab(lab: Lab, browser: Any) -> None:
    from playwright.sync_api import expect

    name = write_notebook(lab.root)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page = open_notebook(browser, lab, name, (1400, 1000))
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        for index in range(SETUP_CELLS):
            run_cell(page, index)
        panel = page.locator(".rnb-panel")
        try:
            expect(panel).to_be_visible(timeout=60_000)
        except AssertionError:
            raise AssertionError(
                f"no panel; cell outputs:\n{outputs_text(page)}\n{lab.log_tail()}"
            ) from None
        row = {
            n: panel.locator(f'tr[data-task="{n}"]')
            for n in ("fetch_prices", "send_report", "rich_report", "slow", "boom", "waiter")
        }
        state = panel.locator(".rnb-scheduler-state")
        expect(state).to_have_text("Scheduler: running")
        # The notebook's own run log, beside it (no note about a shared log).
        assert (lab.root / "panel.redengine_nb.db").is_file()
        expect(panel.locator(".rnb-note")).to_be_empty()

        # A condition on a task that does not exist is marked.
        warning = row["waiter"].locator(".rnb-warning")
        expect(warning).to_have_text("⚠")
        expect(warning).to_have_attribute("title", re.compile("'nope'"))

        # The Dask cluster a task ran on: one line, the dashboard a link to a new tab.
        cluster = panel.locator(".rnb-cluster")
        expect(cluster).to_have_text(
            re.compile(r"^Dask cluster: tcp://127\.0\.0\.1:\d+, 1 worker, dashboard$"),
            timeout=60_000,
        )
        link = cluster.locator("a.rnb-dashboard")
        expect(link).to_have_attribute("href", re.compile(r"^https?://"))
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
        # One scheduler on the notebook's own log: no list of schedulers.
        expect(panel.locator(".rnb-fleet")).to_be_hidden()

        # Each ran once by itself; "run now" makes it twice.
        fetch = row["fetch_prices"]
        expect(fetch.locator(".rnb-runs-count")).to_have_text("1", timeout=30_000)
        expect(fetch.locator(".rnb-badge")).to_have_text("success")
        fetch.locator('button[data-action="run"]').click()
        expect(fetch.locator(".rnb-runs-count")).to_have_text("2", timeout=30_000)

        # Disabling changes the badge and the button.
        report = row["send_report"]
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
        field.fill("every 2 hours")
        field.press("Enter")
        expect(fetch.locator(".rnb-cond-error")).to_be_empty()
        expect(field).to_have_value(re.compile(r"every 2 hours?"))
        expect(panel.locator(".rnb-message")).to_be_empty()
        # A %%task cell's condition changed in the panel: the panel says the cell still has
        # the old one, and what to write in it.
        boom_field = row["boom"].locator(".rnb-cond-input")
        boom_field.fill("every 3 hours")
        boom_field.press("Enter")
        expect(panel.locator(".rnb-message")).to_contain_text("its cell still says 'every 1 hour'")
        expect(panel.locator(".rnb-message")).to_contain_text("%%task every 3 hours")

        runs = panel.locator(".rnb-runs")
        # Output is text, never markup.
        report.locator(".rnb-name").click()
        expect(runs.locator(".rnb-output").first).to_have_text(XSS + "\n", timeout=30_000)
        assert panel.locator("img").count() == 0
        # Each run says which scheduler ran it (host:pid).
        expect(runs.locator(".rnb-run-scheduler").first).to_have_text(re.compile(r"^ +on \S+:\d+$"))

        # Rich output is shown in a frame with no rights, not in the page.
        row["rich_report"].locator(".rnb-name").click()
        frame = runs.locator("iframe.rnb-display-html")
        expect(frame).to_have_count(1, timeout=30_000)
        expect(frame).to_have_attribute("sandbox", "")
        assert "rich-bold" in (frame.get_attribute("srcdoc") or "")
        assert page.locator("#rich-bold").count() == 0
        # The output names the display; no useless "<IPython...HTML object>" after it.
        expect(runs.locator(".rnb-output").first).to_have_text("[display: text/html]\n")

        # A traceback shows the cell's line, and none of the package's frames.
        row["boom"].locator(".rnb-name").click()
        traceback = runs.locator(".rnb-traceback").first
        expect(traceback).to_contain_text('File "<task boom>", line 2', timeout=30_000)
        expect(traceback).to_contain_text("raise ValueError('boom in the cell')")
        assert "redengine_nb" not in traceback.inner_text()

        # A live run shows its output so far.
        slow = row["slow"]
        expect(slow.locator(".rnb-badge")).to_have_text("running", timeout=30_000)
        slow.locator(".rnb-name").click()
        live = runs.locator(".rnb-run").first
        expect(live.locator(".rnb-output")).to_have_text("halfway\n", timeout=30_000)
        expect(live.locator(".rnb-run-took")).to_contain_text("running for")

        # An opened run stays open across updates.
        fetch.locator(".rnb-name").click()
        expect(runs.locator(".rnb-run")).to_have_count(2, timeout=30_000)
        older = runs.locator(".rnb-run").nth(1)
        older_id = older.get_attribute("data-run-id")
        older.locator("summary").click()
        fetch.locator('button[data-action="run"]').click()
        expect(runs.locator(".rnb-run")).to_have_count(3, timeout=30_000)
        expect(runs.locator(f'.rnb-run[data-run-id="{older_id}"]')).to_have_attribute("open", "")

        # Terminate a thread task: "terminating…" at once, and the panel says why it is
        # not stopped mid-statement.
        slow.locator('button[data-action="terminate"]').click()
        expect(slow.locator(".rnb-badge")).to_have_text("terminating…", timeout=10_000)
        expect(panel.locator(".rnb-message")).to_contain_text("cannot be stopped mid-statement")
        # Stop while it runs: the kernel is not blocked; the panel says what it waits for.
        panel.locator('.rnb-toolbar button[data-action="stop"]').click()
        expect(state).to_have_text("Scheduler: stopping…", timeout=10_000)
        expect(panel.locator(".rnb-scheduler-detail")).to_have_text("(waiting for 1 run: slow)")
        panel.screenshot(path=str(DOCS / "panel-stopping.png"))
        run_cell(page, SETUP_CELLS)  # release.set(): the kernel took the cell at once
        expect(state).to_have_text("Scheduler: stopped", timeout=30_000)
        expect(slow.locator(".rnb-badge")).to_have_text("terminate", timeout=30_000)
        panel.locator('.rnb-toolbar button[data-action="stop"]').click()
        expect(panel.locator(".rnb-message")).to_have_text("the scheduler is already stopped")

        # Nothing changes: the page rebuilds nothing (only relative-time texts may change),
        # and does nothing at all while the tab is hidden.
        idle = mutations(page, ".rnb-panel", 2500)
        assert idle["childList"] == 0 and idle["attributes"] == 0, idle
        hidden = mutations(page, ".rnb-panel", 2500, hidden=True)
        assert hidden == {"childList": 0, "characterData": 0, "attributes": 0}, hidden

        panel.locator('.rnb-toolbar button[data-action="start"]').click()
        expect(state).to_have_text("Scheduler: running", timeout=30_000)

        # Delete asks first.
        row["waiter"].locator('button[data-action="delete"]').click()
        confirm = panel.locator(".rnb-confirm")
        expect(confirm).to_contain_text("Delete task waiter?")
        confirm.locator('button[data-confirm="cancel"]').click()
        expect(confirm).to_be_empty()
        expect(row["waiter"]).to_be_visible()
        row["waiter"].locator('button[data-action="delete"]').click()
        confirm.locator('button[data-confirm="delete"]').click()
        expect(row["waiter"]).to_have_count(0, timeout=30_000)

        # The timeline: zoom, one mark per run, hover text, a click opens the run; its
        # width follows the notebook column.
        timeline = panel.locator(".rnb-timeline")
        fetch_bars = timeline.locator('.rnb-bar[data-outcome="success"]')
        expect(fetch_bars.first).to_be_visible()
        panel.locator('.rnb-zoom-button[data-zoom="5 min"]').click()
        expect(panel.locator('.rnb-zoom-button[data-zoom="5 min"]')).to_have_class(
            re.compile("rnb-active")
        )
        box = page.evaluate(
            "() => [document.querySelector('.rnb-timeline-box').clientWidth,"
            " Number(document.querySelector('.rnb-timeline').getAttribute('width'))]"
        )
        assert abs(box[0] - box[1]) <= 2, box
        bar = timeline.locator('.rnb-bar[data-outcome="fail"]').first
        assert re.match(
            r"boom · \d\d:\d\d:\d\d · fail · ", bar.locator("title").text_content() or ""
        )
        bar.click()
        expect(panel.locator(".rnb-runs-heading")).to_have_text("Recent runs of boom")
        bar_run = bar.get_attribute("data-run-id")
        expect(runs.locator(f'.rnb-run[data-run-id="{bar_run}"]')).to_have_attribute("open", "")
        panel.locator('.rnb-zoom-button[data-zoom="fit"]').click()
        page.mouse.move(0, 0)
        panel.screenshot(path=str(DOCS / "panel.png"))
        assert dialogs == []

        # A second scheduler takes a lease on this notebook's log: the panel lists both,
        # this one marked.
        run_cell(page, SETUP_CELLS + 1)
        fetch.locator('button[data-action="run"]').click()
        fleet = panel.locator(".rnb-fleet")
        expect(fleet.locator(".rnb-fleet-item")).to_have_count(2, timeout=30_000)
        expect(fleet).to_contain_text("Schedulers on this log:")
        expect(fleet.locator('.rnb-fleet-item[data-this="1"]')).to_have_text(
            re.compile(r"^\S+:\d+ \(this one\)$")
        )

        # A clock step: the warning line says so; its ✕ dismisses it.
        run_cell(page, SETUP_CELLS + 2)
        warning_line = panel.locator("div.rnb-warning")
        expect(warning_line).to_contain_text("clock step: the clock went back", timeout=30_000)
        warning_line.locator(".rnb-dismiss").click()
        expect(warning_line).to_be_hidden(timeout=30_000)

        # The kernel restarts: the old panel says so and its buttons are off.
        restart_kernel(lab, name)
        expect(state).to_have_text("Scheduler: disconnected", timeout=60_000)
        expect(panel.locator('.rnb-toolbar button[data-action="start"]')).to_be_disabled()
        expect(fetch.locator('button[data-action="run"]')).to_be_disabled()
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "panel-failure.png"), full_page=True)
        raise
    finally:
        context.close()


def test_quickstart_in_jupyterlab(lab: Lab, browser: Any) -> None:
    """The quickstart opens unmodified, runs top to bottom, and shows the panel; the
    README's picture is this notebook in JupyterLab with the panel in it."""
    from playwright.sync_api import expect

    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", lab.root / "quickstart.ipynb")
    context, page = open_notebook(browser, lab, "quickstart.ipynb", (1280, 900))
    try:
        # Opening it changed nothing (its kernelspec and language_info are ipykernel's).
        # Opening it changes nothing but the Python version in language_info (which no
        # file can know in advance): its kernelspec and the rest are ipykernel's.
        before = nbformat.read(lab.root / "quickstart.ipynb", 4).metadata
        tab = page.locator(".lm-TabBar-tab", has_text="quickstart.ipynb")
        page.keyboard.press("Control+s")
        expect(tab).not_to_have_class(re.compile("jp-mod-dirty"), timeout=30_000)
        after = nbformat.read(lab.root / "quickstart.ipynb", 4).metadata
        assert after.kernelspec == before.kernelspec
        after.language_info.pop("version", None)
        assert after.language_info == before.language_info
        sources = [c.source for c in nbformat.read(lab.root / "quickstart.ipynb", 4).cells]
        cells = page.locator(".jp-Notebook .jp-Cell")
        expect(cells).to_have_count(len(sources))
        code = [
            i
            for i, c in enumerate(nbformat.read(lab.root / "quickstart.ipynb", 4).cells)
            if c.cell_type == "code"
        ]
        panel_at = next(i for i in code if sources[i] == "%scheduler panel")
        for index in [i for i in code if i <= panel_at]:
            run_cell_at(page, index)
        panel = page.locator(".rnb-panel")
        expect(panel.locator('tr[data-task="report"] .rnb-badge')).to_have_text(
            "success", timeout=30_000
        )
        panel.locator('tr[data-task="report"] .rnb-name').click()
        expect(panel.locator(".rnb-run .rnb-output").first).to_contain_text("latest price:")
        panel.scroll_into_view_if_needed()
        page.locator(".jp-Cell").nth(panel_at).scroll_into_view_if_needed()
        page.keyboard.press("Control+b")  # hide the file browser: room for the notebook
        expect(page.locator("#filebrowser")).to_be_hidden()
        page.locator(".jp-Cell").nth(panel_at).scroll_into_view_if_needed()
        page.mouse.move(0, 0)
        page.screenshot(path=str(DOCS / "jupyterlab-panel.png"))
        for index in [i for i in code if i > panel_at]:
            run_cell_at(page, index)
        errors = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        )
        assert "Traceback" not in "\n".join(errors.all_inner_texts())
        last = page.locator(".jp-Notebook .jp-Cell").nth(code[-1])
        last.scroll_into_view_if_needed()
        expect(last.locator(".jp-OutputArea-output")).to_contain_text("scheduler stopped")
        assert (lab.root / "quickstart.redengine_nb.db").is_file()
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "quickstart-failure.png"), full_page=True)
        raise
    finally:
        context.close()


def run_cell_at(page: Any, index: int) -> None:
    """Run the cell at ``index`` among all cells (markdown ones included)."""
    from playwright.sync_api import expect

    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]:"), timeout=60_000)
