"""Write quickstart.ipynb (run: python notebooks/make_quickstart.py)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# Cells for a person watching: `redengine-nb serve` leaves them out (docs/serve.md).
SKIP_SERVE = {"tags": ["skip-serve"]}

cells = [
    new_markdown_cell(
        "# redengine_nb quickstart\n\n"
        "Load the extension: it starts a scheduler on a background thread of this kernel."
    ),
    new_code_cell("%load_ext redengine_nb"),
    new_markdown_cell(
        "`%%task CONDITION` registers a cell as a task. Running the cell does not run its "
        "body; it says when the task is next due. Thread runs share this notebook's "
        "variables."
    ),
    new_code_cell(
        "%%task every 5 seconds --name fetch\n"
        "# pretend to fetch a price\n"
        "import random\n"
        "price = round(100 + 10 * random.random(), 2)\n"
        "print('fetched', price)"
    ),
    new_code_cell("%%task after task 'fetch' --name report\nprint(f'latest price: {price}')"),
    new_markdown_cell(
        "`%tasks` is the status table. Tasks print into their run log, never into the cell "
        "that happens to be running."
    ),
    new_code_cell("%tasks"),
    new_markdown_cell(
        "The panel is the same table, live, with controls: run, disable, terminate, delete, "
        "edit a condition, and each task's recent runs with their output."
    ),
    new_code_cell("%scheduler panel", metadata=SKIP_SERVE),
    new_markdown_cell(
        "Run `fetch` now instead of waiting, then wait (at most 30 s) until `report` has "
        "followed it."
    ),
    new_code_cell(
        "import time\n"
        "from redengine_nb.notebook import get_app\n"
        "\n"
        "app = get_app()  # the session the magics use; @app.task(...) works too\n"
        "asked = app.session.now()\n"
        "%task run fetch\n"
        "\n"
        "\n"
        "def followed():  # report succeeded after the run we asked for (not an earlier one)\n"
        "    last = app.session['report'].last_success\n"
        "    return last is not None and last >= asked\n"
        "\n"
        "\n"
        "deadline = time.monotonic() + 30\n"
        "while not followed() and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "print('report last succeeded at', f\"{app.session['report'].last_success:%H:%M:%S}\")",
        metadata=SKIP_SERVE,
    ),
    new_code_cell("%task log report --verbose"),
    new_markdown_cell("Disable a task, look at the table, and stop the scheduler."),
    new_code_cell("%task disable fetch\n%tasks", metadata=SKIP_SERVE),
    new_code_cell("%scheduler stop\n%scheduler status", metadata=SKIP_SERVE),
]

nb = new_notebook(
    cells=cells,
    metadata={
        # What ipykernel's python3 kernelspec and kernel_info say, so that JupyterLab
        # opens the notebook without changing (and dirtying) it.
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": {
            "codemirror_mode": {"name": "ipython", "version": 3},
            "file_extension": ".py",
            "mimetype": "text/x-python",
            "name": "python",
            "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3",
        },
    },
)
nbformat.write(nb, Path(__file__).with_name("quickstart.ipynb"))
