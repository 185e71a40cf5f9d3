// The redengine_nb panel's front end (an anywidget ES module; no imports, works offline).
//
// It renders the snapshot the Python side sends in `data` (see
// redengine_nb/notebook/viewmodel.py) and sends button clicks back as custom messages
// ({action, task, text}). Task data (names, conditions, output, tracebacks) is only ever put
// into the page with textContent / setAttribute, never as markup.
//
// Relative times ("3 s ago", "in 5 min", "running 12 s") follow the same rule as
// viewmodel.format_relative and are re-drawn every second from the server's clock, so no
// message is needed for time to pass.

const SVG_NS = "http://www.w3.org/2000/svg";

const OUTCOME_COLOURS = {
  running: "#1f6feb",
  success: "#1a7f37",
  fail: "#cf222e",
  terminate: "#bc4c00",
  inaction: "#6e7781",
  crash: "#8250df",
  disabled: "#57606a",
  new: "#8c959f",
};

function span(seconds) {
  const s = Math.abs(seconds);
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

function relative(ts, now) {
  if (ts === null || ts === undefined) return "";
  const delta = ts - now;
  if (Math.abs(delta) < 1) return "now";
  return delta > 0 ? `in ${span(delta)}` : `${span(delta)} ago`;
}

function nextDue(ts, now) {
  if (ts === null || ts === undefined) return "on event";
  if (ts <= now) return "due now";
  return relative(ts, now);
}

function runtime(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, seconds);
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const r = Math.floor(s % 60);
    return r ? `${m} min ${r} s` : `${m} min`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

function h(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const root = h("div", { className: "rnb-panel" });
  el.appendChild(root);

  // The server clock: data.now was true when the snapshot arrived.
  let received = Date.now() / 1000;
  const serverNow = () => (model.get("data").now || received) + (Date.now() / 1000 - received);

  const send = (action, task, text) => {
    const msg = { action };
    if (task !== undefined) msg.task = task;
    if (text !== undefined) msg.text = text;
    model.send(msg);
  };

  // Scheduler bar.
  const bar = h("div", { className: "rnb-toolbar" });
  const state = h("span", { className: "rnb-scheduler-state" });
  bar.appendChild(state);
  for (const [action, label] of [["start", "start"], ["stop", "stop"], ["restart", "restart"]]) {
    const button = h("button", { className: "rnb-button", "data-action": action }, label);
    button.addEventListener("click", () => send(action));
    bar.appendChild(button);
  }
  const message = h("span", { className: "rnb-message", role: "alert" });
  bar.appendChild(message);
  root.appendChild(bar);

  // Status table.
  const table = h("table", { className: "rnb-table" });
  const head = h("tr");
  for (const title of ["task", "condition", "status", "last run", "next due", "runtime",
    "runs", "fails", ""]) {
    head.appendChild(h("th", {}, title));
  }
  table.appendChild(h("thead")).appendChild(head);
  const body = h("tbody");
  table.appendChild(body);
  root.appendChild(table);
  const empty = h("div", { className: "rnb-empty" }, "No tasks yet.");
  root.appendChild(empty);

  // Timeline.
  const timelineBox = h("div", { className: "rnb-timeline-box" });
  timelineBox.appendChild(h("div", { className: "rnb-heading" }, "Runs in the last hour"));
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "rnb-timeline");
  timelineBox.appendChild(svg);
  root.appendChild(timelineBox);

  // Selected task's runs.
  const runsBox = h("div", { className: "rnb-runs" });
  root.appendChild(runsBox);

  const rows = new Map(); // task name -> {tr, parts}

  function makeRow(name) {
    const tr = h("tr", { className: "rnb-row", "data-task": name });
    const nameCell = h("td", { className: "rnb-name" }, name);
    nameCell.title = "show recent runs";
    nameCell.addEventListener("click", () => {
      model.set("selected", model.get("selected") === name ? "" : name);
      model.save_changes();
    });
    const condCell = h("td", { className: "rnb-cond" });
    const input = h("input", { className: "rnb-cond-input", type: "text", spellcheck: "false" });
    input.dataset.dirty = "";
    input.addEventListener("input", () => { input.dataset.dirty = "1"; });
    const apply = h("button", { className: "rnb-button", "data-action": "condition" }, "set");
    // The field keeps what the user typed until the kernel accepts it (see onReply).
    const submit = () => {
      input.dataset.dirty = "1";
      send("condition", name, input.value);
    };
    apply.addEventListener("click", submit);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") submit();
      event.stopPropagation(); // keep JupyterLab's shortcuts out of the field
    });
    const condError = h("div", { className: "rnb-cond-error" });
    condCell.append(input, apply, condError);
    const statusCell = h("td", { className: "rnb-status" });
    const badge = h("span", { className: "rnb-badge" });
    const running = h("span", { className: "rnb-running-for" });
    statusCell.append(badge, running);
    const lastRun = h("td", { className: "rnb-last-run" });
    const due = h("td", { className: "rnb-next-due" });
    const took = h("td", { className: "rnb-runtime" });
    const runs = h("td", { className: "rnb-runs-count" });
    const fails = h("td", { className: "rnb-fails-count" });
    const actions = h("td", { className: "rnb-actions" });
    const buttons = {};
    for (const [action, label] of [["run", "run now"], ["toggle", "disable"],
      ["terminate", "terminate"], ["delete", "delete"]]) {
      const button = h("button", { className: "rnb-button", "data-action": action }, label);
      button.addEventListener("click", () => {
        if (action === "toggle") {
          send(button.dataset.next, name);
        } else {
          send(action, name);
        }
      });
      buttons[action] = button;
      actions.appendChild(button);
    }
    tr.append(nameCell, condCell, statusCell, lastRun, due, took, runs, fails, actions);
    return { tr, input, condError, badge, running, lastRun, due, took, runs, fails, buttons };
  }

  function updateRow(parts, row, errors) {
    const { tr, input, condError, badge, buttons } = parts;
    tr.classList.toggle("rnb-selected", model.get("selected") === row.name);
    tr.dataset.badge = row.badge;
    if (document.activeElement !== input && !input.dataset.dirty) input.value = row.condition;
    const error = errors[row.name] || "";
    condError.textContent = error;
    input.classList.toggle("rnb-invalid", Boolean(error));
    badge.textContent = row.badge;
    badge.dataset.badge = row.badge;
    badge.style.background = OUTCOME_COLOURS[row.badge] || OUTCOME_COLOURS.new;
    badge.title = row.status ? `last run: ${row.status}` : "never run";
    parts.runs.textContent = String(row.runs);
    parts.fails.textContent = String(row.fails);
    parts.took.textContent = runtime(row.runtime);
    parts.lastRun.title = row.last_run_clock;
    parts.due.title = row.next_due_clock;
    buttons.toggle.textContent = row.disabled ? "enable" : "disable";
    buttons.toggle.dataset.next = row.disabled ? "enable" : "disable";
    buttons.terminate.disabled = !row.is_running;
  }

  function drawTimes() {
    const data = model.get("data") || {};
    const now = serverNow();
    for (const row of data.tasks || []) {
      const parts = rows.get(row.name);
      if (!parts) continue;
      parts.lastRun.textContent = relative(row.last_run, now);
      parts.due.textContent = row.disabled ? "" : nextDue(row.next_due, now);
      parts.running.textContent = row.is_running && row.running_since !== null
        ? ` ${runtime(now - row.running_since)}` : "";
    }
    drawTimeline(data, now);
  }

  function drawTimeline(data, now) {
    const timeline = data.timeline || { window: 3600, tasks: [] };
    const lanes = timeline.tasks || [];
    const width = Math.max(320, Math.min(900, root.clientWidth || 640));
    const labelW = 140;
    const rowH = 18;
    const height = Math.max(1, lanes.length) * rowH + 16;
    const windowS = timeline.window || 3600;
    const scale = (width - labelW - 4) / windowS;
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.replaceChildren();
    lanes.forEach((lane, index) => {
      const y = index * rowH;
      const label = document.createElementNS(SVG_NS, "text");
      label.setAttribute("x", "0");
      label.setAttribute("y", String(y + rowH - 5));
      label.setAttribute("class", "rnb-lane-label");
      label.textContent = lane.name;
      svg.appendChild(label);
      const track = document.createElementNS(SVG_NS, "rect");
      track.setAttribute("x", String(labelW));
      track.setAttribute("y", String(y + 3));
      track.setAttribute("width", String(width - labelW - 4));
      track.setAttribute("height", String(rowH - 6));
      track.setAttribute("class", "rnb-lane");
      svg.appendChild(track);
      for (const b of lane.bars) {
        const end = b.outcome === "running" ? now : b.end;
        const start = Math.max(b.start, now - windowS);
        if (end < now - windowS) continue;
        const rect = document.createElementNS(SVG_NS, "rect");
        rect.setAttribute("x", (labelW + (start - (now - windowS)) * scale).toFixed(1));
        rect.setAttribute("y", String(y + 3));
        rect.setAttribute("width", Math.max(3, (end - start) * scale).toFixed(1));
        rect.setAttribute("height", String(rowH - 6));
        rect.setAttribute("fill", OUTCOME_COLOURS[b.outcome] || OUTCOME_COLOURS.new);
        rect.setAttribute("class", "rnb-bar");
        rect.setAttribute("data-outcome", b.outcome);
        const tip = document.createElementNS(SVG_NS, "title");
        tip.textContent = `${lane.name}: ${b.outcome} (${runtime(end - b.start)})`;
        rect.appendChild(tip);
        svg.appendChild(rect);
      }
    });
    const axis = document.createElementNS(SVG_NS, "text");
    axis.setAttribute("x", String(labelW));
    axis.setAttribute("y", String(height - 2));
    axis.setAttribute("class", "rnb-axis");
    axis.textContent = `${Math.round(windowS / 60)} min ago`;
    const nowLabel = document.createElementNS(SVG_NS, "text");
    nowLabel.setAttribute("x", String(width - 4));
    nowLabel.setAttribute("y", String(height - 2));
    nowLabel.setAttribute("text-anchor", "end");
    nowLabel.setAttribute("class", "rnb-axis");
    nowLabel.textContent = "now";
    svg.append(axis, nowLabel);
  }

  function drawRuns(data) {
    runsBox.replaceChildren();
    const selected = data.selected || "";
    if (!selected) {
      runsBox.appendChild(h("div", { className: "rnb-hint" },
        "Click a task's name to see its recent runs."));
      return;
    }
    runsBox.appendChild(h("div", { className: "rnb-heading" }, `Recent runs of ${selected}`));
    if (!(data.runs || []).length) {
      runsBox.appendChild(h("div", { className: "rnb-hint" }, "No runs yet."));
    }
    for (const run of data.runs || []) {
      const item = h("details", { className: "rnb-run", "data-run-id": run.run_id });
      const summary = h("summary");
      const badge = h("span", { className: "rnb-badge", "data-badge": run.action }, run.action);
      badge.style.background = OUTCOME_COLOURS[run.action] || OUTCOME_COLOURS.new;
      summary.append(badge, document.createTextNode(` ${run.start_clock}  ${run.runtime_text}`));
      item.appendChild(summary);
      if (run.output) item.appendChild(h("pre", { className: "rnb-output" }, run.output));
      if (run.exc_text) item.appendChild(h("pre", { className: "rnb-traceback" }, run.exc_text));
      if (!run.output && !run.exc_text) {
        item.appendChild(h("div", { className: "rnb-hint" }, "No output."));
      }
      runsBox.appendChild(item);
    }
    const first = runsBox.querySelector("details");
    if (first) first.open = true;
  }

  function draw() {
    const data = model.get("data") || {};
    const errors = model.get("errors") || {};
    const sched = data.scheduler || { running: false };
    state.textContent = `Scheduler: ${sched.running ? "running" : "stopped"}`;
    state.dataset.state = sched.running ? "running" : "stopped";
    message.textContent = model.get("message") || "";
    const seen = new Set();
    for (const row of data.tasks || []) {
      seen.add(row.name);
      let parts = rows.get(row.name);
      if (!parts) {
        parts = makeRow(row.name);
        rows.set(row.name, parts);
      }
      body.appendChild(parts.tr); // keeps the order of the data
      updateRow(parts, row, errors);
    }
    for (const [name, parts] of rows) {
      if (!seen.has(name)) {
        parts.tr.remove();
        rows.delete(name);
      }
    }
    empty.style.display = seen.size ? "none" : "";
    drawRuns(data);
    drawTimes();
    root.dataset.version = String((Number(root.dataset.version) || 0) + 1);
  }

  const onReply = (content) => {
    if (!content || content.reply !== "condition") return;
    const parts = rows.get(content.task);
    if (parts && content.ok) {
      parts.input.dataset.dirty = "";
      draw();
    }
  };
  model.on("msg:custom", onReply);

  const redraw = () => draw();
  const fresh = () => {
    received = Date.now() / 1000;
    draw();
  };
  model.on("change:data", fresh);
  model.on("change:errors", redraw);
  model.on("change:message", redraw);
  model.on("change:selected", redraw);
  draw();
  const ticker = setInterval(drawTimes, 1000);
  return () => {
    clearInterval(ticker);
    model.off("msg:custom", onReply);
    model.off("change:data", fresh);
    model.off("change:errors", redraw);
    model.off("change:message", redraw);
    model.off("change:selected", redraw);
  };
}

export default { render };
