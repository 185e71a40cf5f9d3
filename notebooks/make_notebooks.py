"""Write etl-demo.ipynb, advanced.ipynb and dask.ipynb (run: python notebooks/make_notebooks.py).

All run in a kernel (``%load_ext redengine_nb``) and headless
(``redengine-nb serve notebooks/<name>.ipynb --for 20s``). Cells that only make sense
with a person watching are tagged ``skip-serve``.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SKIP = {"tags": ["skip-serve"]}
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def code(source: str, **metadata: object) -> nbformat.NotebookNode:
    cell = new_code_cell(source.strip("\n"))
    cell.metadata.update(metadata)
    return cell


def md(source: str) -> nbformat.NotebookNode:
    return new_markdown_cell(source.strip("\n"))


ETL = [
    md("""
# ETL demo: fetch → transform → report

A small pipeline that runs in this notebook and, unchanged, as a service:

```
redengine-nb serve notebooks/etl-demo.ipynb --for 20s
```

- **fetch** (`every 5 seconds`) pulls a new batch of readings from a weather-station
  export. The export is simulated: the notebook makes its own local data, no network.
- **transform** (`after task 'fetch'`) cleans every batch fetched so far (drops sensor
  glitches, joins the station registry) and writes one tidy table.
- **report** (`after task 'transform'`) writes a small Markdown report per station.

Everything lives under `etl-demo-data/` next to this notebook (a kernel and
`redengine-nb serve` both work in the notebook's folder).
"""),
    code("%load_ext redengine_nb"),
    code("""
import random
from datetime import datetime
from pathlib import Path

import pandas as pd

from redengine_nb.notebook import get_app

app = get_app()  # in a kernel: the kernel's scheduler; under serve: the served app

DATA = Path("etl-demo-data")
RAW, CLEAN, REPORTS = DATA / "raw", DATA / "clean", DATA / "reports"
for folder in (RAW, CLEAN, REPORTS):
    folder.mkdir(parents=True, exist_ok=True)
"""),
    md("""
The station registry is reference data the pipeline joins against. The "upstream export"
is a function that makes a batch of readings, with the occasional sensor glitch
(`-999.0`) a real export has.
"""),
    code("""
STATIONS = pd.DataFrame(
    {
        "station": ["HEL", "TKU", "OUL", "ROV"],
        "city": ["Helsinki", "Turku", "Oulu", "Rovaniemi"],
        "lat": [60.17, 60.45, 65.01, 66.50],
    }
)
STATIONS.to_csv(DATA / "stations.csv", index=False)


def upstream_export(rows: int = 24) -> pd.DataFrame:
    \"\"\"One batch of readings as the (simulated) upstream system would export it.\"\"\"
    rng = random.Random()
    now = datetime.now().replace(microsecond=0)
    records = []
    for _ in range(rows):
        station = rng.choice(STATIONS["station"].tolist())
        lat = float(STATIONS.set_index("station").loc[station, "lat"])
        temp = round(12 - (lat - 60) * 1.8 + rng.gauss(0, 2.5), 1)
        if rng.random() < 0.08:
            temp = -999.0  # a sensor glitch
        records.append({"time": now.isoformat(), "station": station, "temp_c": temp})
    return pd.DataFrame(records)


upstream_export(3)
"""),
    md("""
The three tasks. Each `%%task` cell registers its body as a task; running the cell does
not run the body. The bodies run in this notebook's namespace, so they use `RAW`,
`upstream_export` and friends from the cells above.
"""),
    code("""
%%task every 5 seconds --name fetch
# fetch a new batch from the upstream export
batch = upstream_export()
stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
batch.to_csv(RAW / f"readings-{stamp}.csv", index=False)
print(f"fetched {len(batch)} readings into readings-{stamp}.csv")
"""),
    code("""
%%task after task 'fetch' --name transform
# clean and join everything fetched so far
frames = [pd.read_csv(path) for path in sorted(RAW.glob("readings-*.csv"))]
readings = pd.concat(frames, ignore_index=True)
glitches = readings["temp_c"] <= -100
tidy = readings[~glitches].merge(pd.read_csv(DATA / "stations.csv"), on="station")
tidy.to_csv(CLEAN / "readings.csv", index=False)
print(f"{len(tidy)} clean readings from {len(frames)} batches; dropped {int(glitches.sum())}")
"""),
    code("""
%%task after task 'transform' --name report
# summarise per station
tidy = pd.read_csv(CLEAN / "readings.csv")
summary = (
    tidy.groupby(["station", "city"])["temp_c"]
    .agg(readings="count", mean="mean", low="min", high="max")
    .round(1)
    .reset_index()
)
lines = [f"# Temperatures, {datetime.now():%Y-%m-%d %H:%M:%S}", ""]
lines += [
    f"- {row.city} ({row.station}): mean {row.mean} °C, {row.low}…{row.high} °C, "
    f"{row.readings} readings"
    for row in summary.itertuples()
]
(REPORTS / "latest.md").write_text("\\n".join(lines) + "\\n", encoding="utf-8")
print("\\n".join(lines))
"""),
    md("""
Watching it (these cells are tagged `skip-serve`: headless, `redengine-nb serve` prints
a line per run instead, and `redengine-nb status` / `redengine-nb log report` read the
same run log).
"""),
    code("%tasks", **SKIP),
    code(
        """
import time

deadline = time.monotonic() + 30
while app.session["report"].last_success is None and time.monotonic() < deadline:
    time.sleep(0.2)
print((REPORTS / "latest.md").read_text(encoding="utf-8"))
""",
        **SKIP,
    ),
    code("%task log report", **SKIP),
]


ADVANCED = [
    md("""
# Advanced guide

The Red Engine advanced guide as a runnable notebook: the app's configuration, the task
kinds, and tasks that change the running system. It runs in a kernel and headless:

```
redengine-nb serve notebooks/advanced.ipynb --for 20s
```
"""),
    md("""
## App configuration

`RedEngine(config={...})` takes these options; the values below are the defaults of a
plain `RedEngine()` (`max_process_count` defaults to the CPU count). The app made here is
only for looking at: it is never started.
"""),
    code("""
import os

from redengine_nb import ConfigError, RedEngine

example = RedEngine(
    config={
        "task_execution": "process",
        "task_pre_exist": "raise",
        "force_status_from_logs": True,
        "silence_task_prerun": False,
        "silence_cond_check": False,
        "max_process_count": 5,
        "restarting": "replace",
    },
    logs=":memory:",
)
for key in ("task_execution", "task_pre_exist", "max_process_count", "restarting"):
    print(f"{key} = {getattr(example.config, key)!r}")
"""),
    md("""
- **task_execution**: how tasks run by default: `process` (a separate process), `thread`
  (a separate thread), `main` (inline, no parallelism).
- **task_pre_exist**: a task whose name exists: `raise`, `rename` (numbers appended),
  `ignore` (not inserted), `replace`.
- **force_status_from_logs**: `True` reads statuses from the run log at every check
  (robust); `False` uses a cached status when there is one.
- **silence_task_prerun** / **silence_cond_check**: `True` logs an error while starting a
  task / checking a condition and goes on; `False` stops the scheduler (for debugging).
- **max_process_count**: most process runs at once.
- **restarting**: what a restart does: `replace` the process, `relaunch` a new one,
  `fresh` a new detached one, `recall` start the scheduler again in this process.

Values are checked, also when assigned later:
"""),
    code("""
try:
    example.config.task_execution = "fork"
except ConfigError as exc:
    print(exc)
"""),
    md("""
The scheduler of this notebook is the extension's (in a kernel) or the served one
(headless). A kernel's session runs tasks in threads, replaces a task whose cell is run
again, and restarts with `recall` (the only mode that keeps a kernel alive).
"""),
    code("""
%load_ext redengine_nb
from redengine_nb.notebook import get_app

app = get_app()
print("task_execution:", app.config.task_execution)
"""),
    md("""
## Task kinds

- **FuncTask** calls a Python function (or a function imported from a file at each run);
- **CommandTask** runs a shell command;
- **CodeTask** executes Python source text (potentially dangerous: it runs whatever the
  text says).
"""),
    code("""
def run_things():
    print("running things")


app.task("daily", func=run_things)

os.makedirs("jobs", exist_ok=True)
with open("jobs/job.py", "w", encoding="utf-8") as fh:
    fh.write("def main():\\n    print('main() of jobs/job.py, imported fresh')\\n")
app.task("daily", func_name="main", path="jobs/job.py", name="job_main")

app.task("daily", command='echo "Hello world"', name="hello_command")

app.task("daily", code='print("Hello world")', name="hello")


@app.task("daily", execution="thread")
def do_things():
    print("doing things in a thread")
"""),
    md("A `%%task` cell is a CodeTask too; it runs in this notebook's namespace."),
    code("""
%%task daily --name cell_task
# a cell as a task
print("a cell ran as a task; it sees notebook names such as", run_things.__name__)
"""),
    md("""
## Modifying the system at run time

A task that runs in a thread (or in the main loop) can take the session as an argument
and change the running system: shut it down, restart it, force a task to run, disable
tasks, create, update or delete them. Process tasks cannot (separate memory).

Here `do_modify_tasks` runs once `hello` has run: it forces `do_restart` (whose own
condition is never true) and disables the demo tasks. `do_restart` restarts the
scheduler; once it has run, `do_shutdown` shuts the scheduler down.
"""),
    code("""
from redengine_nb.args import Session


@app.task("after task 'do_restart'", execution="thread")
def do_shutdown(session=Session()):
    session.shut_down()


@app.task("false", execution="thread")
def do_restart(session=Session()):
    session.restart()


@app.task("after task 'hello'", execution="thread")
def do_modify_tasks(session=Session()):
    task = session["do_restart"]
    task.force_run = True

    for task in session.tasks:
        if task.name not in ("do_restart", "do_shutdown"):
            task.disable = True
"""),
    md("In a kernel, watch it happen (headless, `redengine-nb status` shows the same):"),
    code("%tasks", **SKIP),
]


DASK = [
    md("""
# Runs on a Dask cluster

`execution="dask"` (or `--execution dask` on a `%%task` cell) runs a task on a worker of a
Dask cluster, with the same run records, output and controls as a local run.

- Config `dask_address` names your cluster's scheduler (`"tcp://scheduler:8786"`). Left
  at `None`, a `LocalCluster` (worker processes sized to this machine) starts at the first
  Dask run and is closed when the scheduler stops.
- Functions and cell code travel with Dask's own serialisation (cloudpickle); what they
  print comes back with the run; `Return('x')` passes values as for process runs.
- The workers need `redengine_nb` (`pip install redengine_nb[dask]`) and whatever the
  tasks import.

Served headless (`redengine-nb serve notebooks/dask.ipynb --for 20s`) it works the same.
"""),
    code("%load_ext redengine_nb"),
    code("""
from redengine_nb.args import Return
from redengine_nb.notebook import get_app

app = get_app()
# None: a LocalCluster on first use. For a cluster of your own:
# app.config.dask_address = "tcp://scheduler:8786"
app.config.dask_max_runs = 8  # most Dask runs submitted at once
"""),
    code("""
%%task every 10 seconds --name squares --execution dask
import os

total = sum(i * i for i in range(200_000))
print(f"summed on worker process {os.getpid()}: {total}")
total
"""),
    code("""
@app.task("after task 'squares'", execution="dask")
def double(total=Return("squares")):
    print("doubling", total)
    return 2 * total
"""),
    md("In a kernel, wait for the first results, then look at the cluster and the log:"),
    code(
        """
import time

deadline = time.monotonic() + 120
while app.session["double"].last_success is None and time.monotonic() < deadline:
    time.sleep(0.2)
print("double returned", app.session.returns.get("double"))
cluster = app.session.dask_cluster()
print("workers:", cluster["workers"], "| dashboard:", cluster["dashboard"])
""",
        **SKIP,
    ),
    code("%task log squares --verbose", **SKIP),
    code("%tasks", **SKIP),
]


def write(name: str, cells: list[nbformat.NotebookNode]) -> None:
    nb = new_notebook(cells=cells, metadata=METADATA)
    nbformat.validate(nb)
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("etl-demo.ipynb", ETL)
    write("advanced.ipynb", ADVANCED)
    write("dask.ipynb", DASK)
