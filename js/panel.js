// The redengine_nb panel's front end (an anywidget ES module; no imports, works offline).
//
// It draws the snapshot the kernel sends in `data` (shapes: redengine_nb/notebook/
// protocol.py) with the colours, time units and zooms of the `protocol` trait, and sends
// clicks back as custom messages ({action, task, text, choice}). Task data (names,
// conditions, output, tracebacks) only enters the page through textContent/setAttribute;
// a run's rich (HTML) output is shown in an <iframe sandbox> with no rights at all.
//
// Cost when nothing changes: one timer a second that rewrites only the relative-time texts
// that changed (and the timeline when its window moved by a pixel), and does nothing while
// the tab is hidden or the panel is scrolled out of view.

const SVG_NS = "http://www.w3.org/2000/svg";
const LIVE = new Set(["running", "terminating"]); // outcomes of a run that is still alive

function h(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

// Change a text only when it differs, and in place (one characterData change, no node
// rebuilt).
function setText(node, text) {
  if (node.textContent === text) return;
  const first = node.firstChild;
  if (first && first.nodeType === Node.TEXT_NODE && !first.nextSibling) first.data = text;
  else node.textContent = text;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function render({ model, el }) {
  const protocol = model.get("protocol") || {};
  const colours = protocol.colours || {};
  const units = protocol.time_units || [[null, 1, "s"]];
  const zooms = [["fit", 0], ...(protocol.zooms || [])];
  const colour = (kind) => colours[kind] || colours.new;

  // Time text, by the protocol's units (protocol.format_relative in Python).
  const span = (seconds) => {
    const s = Math.abs(seconds);
    for (const [below, per, unit] of units) {
      if (below === null || s < below) return `${Math.floor(s / per)} ${unit}`;
    }
    return "";
  };
  const relative = (ts, now) => {
    if (ts === null || ts === undefined) return "";
    const delta = ts - now;
    if (Math.abs(delta) < 1) return "now";
    return delta > 0 ? `in ${span(delta)}` : `${span(delta)} ago`;
  };
  const nextDue = (ts, now) => {
    if (ts === null || ts === undefined) return "on event";
    return ts <= now ? "due now" : relative(ts, now);
  };

  const root = h("div", { className: "rnb-panel" });
  el.appendChild(root);

  // The kernel's clock: data.now was true when the snapshot arrived.
  let received = Date.now() / 1000;
  const kernelNow = () => (model.get("data").now || received) + (Date.now() / 1000 - received);
  let disconnected = false;

  const send = (action, task, extra = {}) => {
    if (disconnected) return;
    const msg = { action, ...extra };
    if (task !== undefined) msg.task = task;
    model.send(msg);
  };

  // Scheduler bar.
  const bar = h("div", { className: "rnb-toolbar" });
  const state = h("span", { className: "rnb-scheduler-state" });
  const detail = h("span", { className: "rnb-scheduler-detail" });
  bar.append(state, detail);
  const allButtons = [];
  for (const [action, label] of [["start", "start"], ["stop", "stop"], ["restart", "restart"]]) {
    const button = h("button", { className: "rnb-button", "data-action": action }, label);
    button.addEventListener("click", () => send(action));
    allButtons.push(button);
    bar.appendChild(button);
  }
  root.appendChild(bar);
  // What the operator must know (a big clock step, a run log refusing writes): text only.
  const warningLine = h("div", { className: "rnb-warning", role: "alert" });
  const warningText = h("span", { className: "rnb-warning-text" });
  // A clock-step warning can be dismissed once read (its effect stays until the clock
  // catches up); a run log write error cannot.
  const dismiss = h("button", { className: "rnb-dismiss", title: "dismiss this warning",
    "aria-label": "dismiss this warning" }, "✕");
  dismiss.addEventListener("click", () => send("dismiss_warning"));
  warningLine.append(warningText, dismiss);
  warningLine.hidden = true;
  root.appendChild(warningLine);
  // The schedulers on a shared run log, and the Dask cluster (each shown only when sent).
  const fleetBox = h("div", { className: "rnb-fleet" });
  const clusterLine = h("div", { className: "rnb-cluster" });
  root.append(fleetBox, clusterLine);
  const message = h("div", { className: "rnb-message", role: "alert" });
  root.appendChild(message);
  const confirmBox = h("div", { className: "rnb-confirm" });
  root.appendChild(confirmBox);

  // Status table.
  const table = h("table", { className: "rnb-table" });
  const head = h("tr");
  for (const title of ["task", "condition", "status", "last run", "next due", "took",
    "runs", "fails", ""]) {
    head.appendChild(h("th", {}, title));
  }
  table.appendChild(h("thead")).appendChild(head);
  const body = h("tbody");
  table.appendChild(body);
  root.appendChild(table);
  const empty = h("div", { className: "rnb-empty" }, "No tasks yet.");
  root.appendChild(empty);
  const note = h("div", { className: "rnb-note" });
  root.appendChild(note);

  // Timeline, with its zoom.
  const timelineBox = h("div", { className: "rnb-timeline-box" });
  const zoomBar = h("div", { className: "rnb-zoom" });
  zoomBar.appendChild(h("span", { className: "rnb-heading" }, "Runs "));
  let zoom = "fit";
  const zoomButtons = [];
  for (const [label] of zooms) {
    const button = h("button", { className: "rnb-button rnb-zoom-button", "data-zoom": label },
      label);
    button.addEventListener("click", () => {
      zoom = label;
      drawTimeline(true);
    });
    zoomButtons.push(button);
    zoomBar.appendChild(button);
  }
  timelineBox.appendChild(zoomBar);
  const chart = svg("svg", { class: "rnb-timeline" });
  timelineBox.appendChild(chart);
  root.appendChild(timelineBox);

  // Selected task's runs.
  const runsBox = h("div", { className: "rnb-runs" });
  root.appendChild(runsBox);

  const rows = new Map(); // task name -> row parts
  const runViews = new Map(); // run_id -> run parts
  const openRuns = new Set(); // run ids the user opened (kept across updates)
  const closedRuns = new Set(); // run ids the user closed
  let runsOf = "";

  function askDelete(row) {
    confirmBox.replaceChildren();
    const text = row.is_running
      ? `Delete task ${row.name}? It is running now: terminate its run, or let it finish?`
      : `Delete task ${row.name}? Its history stays in the run log.`;
    confirmBox.appendChild(h("span", {}, text));
    const choices = row.is_running
      ? [["terminate", "delete, terminate the run"], ["finish", "delete, let it finish"]]
      : [["", "delete"]];
    for (const [choice, label] of choices) {
      const button = h("button", { className: "rnb-button rnb-danger",
        "data-confirm": choice || "delete" }, label);
      button.addEventListener("click", () => {
        confirmBox.replaceChildren();
        send("delete", row.name, choice ? { choice } : {});
      });
      confirmBox.appendChild(button);
    }
    const cancel = h("button", { className: "rnb-button", "data-confirm": "cancel" }, "cancel");
    cancel.addEventListener("click", () => confirmBox.replaceChildren());
    confirmBox.appendChild(cancel);
  }

  function makeRow(name) {
    const tr = h("tr", { className: "rnb-row", "data-task": name });
    const nameCell = h("td", { className: "rnb-name" });
    const nameText = h("span", {}, name);
    const warn = h("span", { className: "rnb-warning" });
    nameCell.append(nameText, warn);
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
      send("condition", name, { text: input.value });
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
    let current = null;
    for (const [action, label] of [["run", "run"], ["toggle", "disable"],
      ["terminate", "terminate"], ["delete", "delete"]]) {
      const button = h("button", { className: "rnb-button", "data-action": action }, label);
      button.addEventListener("click", () => {
        if (action === "toggle") send(button.dataset.next, name);
        else if (action === "delete") askDelete(current);
        else send(action, name);
      });
      buttons[action] = button;
      allButtons.push(button);
      actions.appendChild(button);
    }
    tr.append(nameCell, condCell, statusCell, lastRun, due, took, runs, fails, actions);
    const parts = { tr, input, apply, condError, badge, running, lastRun, due, took, runs, fails,
      buttons, warn, row: null };
    parts.setRow = (row) => { current = row; parts.row = row; };
    return parts;
  }

  function updateRow(parts, row, errors) {
    const { tr, input, condError, badge, buttons, warn } = parts;
    parts.setRow(row);
    tr.classList.toggle("rnb-selected", model.get("selected") === row.name);
    tr.dataset.badge = row.badge;
    if (document.activeElement !== input && !input.dataset.dirty) input.value = row.condition;
    const error = errors[row.name] || "";
    setText(condError, error);
    input.classList.toggle("rnb-invalid", Boolean(error));
    setText(badge, row.badge === "terminating" ? "terminating…" : row.badge);
    badge.dataset.badge = row.badge;
    badge.style.background = colour(row.badge);
    badge.title = row.status ? `last run: ${row.status}` : "never run";
    setText(warn, row.warning ? " ⚠" : "");
    warn.title = row.warning;
    tr.classList.toggle("rnb-warned", Boolean(row.warning));
    setText(parts.runs, String(row.runs));
    setText(parts.fails, String(row.fails));
    setText(parts.took, row.runtime_text);
    parts.lastRun.title = row.last_run_clock;
    parts.due.title = row.next_due_clock;
    setText(buttons.toggle, row.disabled ? "enable" : "disable");
    buttons.toggle.dataset.next = row.disabled ? "enable" : "disable";
    buttons.terminate.disabled = disconnected || !row.is_running || row.badge === "terminating";
    buttons.terminate.title = row.execution === "thread"
      ? "a thread stops when its code returns; --execution process tasks stop at once" : "";
  }

  // --- relative times: only the texts that changed -----------------------------------
  function drawTimes(now) {
    for (const parts of rows.values()) {
      const row = parts.row;
      if (!row) continue;
      setText(parts.lastRun, relative(row.last_run, now));
      setText(parts.due, row.disabled || disconnected ? ""
        : row.due_now ? "due now" : nextDue(row.next_due, now));
      setText(parts.running, row.is_running && row.running_since !== null
        ? ` ${span(now - row.running_since)}` : "");
    }
    for (const view of runViews.values()) {
      if (view.run.live) setText(view.took, `running for ${span(now - view.run.start)}`);
    }
  }

  // --- timeline ------------------------------------------------------------------------
  let drawnAt = 0;
  let drawnWidth = 0;
  // [start, end] of the timeline: the last ZOOM seconds, or ("fit") from the first run
  // kept to the last one's end (to now while one is live), so an idle panel stands still.
  function timelineWindow(data, now, live) {
    const tl = data.timeline || { first: null, last: null, horizon: 86400, lanes: [] };
    for (const [label, seconds] of zooms) {
      if (label === zoom && seconds > 0) return [now - seconds, now];
    }
    if (tl.first === null || tl.first === undefined) return [now - 300, now];
    const end = live || tl.last === null ? now : Math.max(tl.last, tl.first + 30);
    const span0 = Math.max(30, end - tl.first);
    return [tl.first - span0 * 0.02, end + span0 * 0.03];
  }

  const clockFmt = (tz) => {
    try {
      return new Intl.DateTimeFormat("en-GB", { timeZone: tz, hour: "2-digit",
        minute: "2-digit", second: "2-digit", hour12: false });
    } catch (error) {
      return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit",
        second: "2-digit", hour12: false });
    }
  };

  function drawTimeline(force) {
    const data = model.get("data") || {};
    const now = kernelNow();
    const width = Math.max(320, Math.floor(timelineBox.clientWidth || root.clientWidth || 640));
    const lanes = data.timeline?.lanes || [];
    const live = lanes.some((l) => l.bars.some((b) => LIVE.has(b.outcome)));
    const [start0, end0] = timelineWindow(data, now, live);
    const windowS = end0 - start0;
    const labelW = Math.min(160, Math.floor(width * 0.25));
    const scale = (width - labelW - 4) / windowS;
    const moving = zoom !== "fit" || live;
    if (!force && width === drawnWidth && !(moving && (now - drawnAt) * scale >= 1)) return;
    drawnAt = now;
    drawnWidth = width;
    for (const button of zoomButtons) {
      button.classList.toggle("rnb-active", button.dataset.zoom === zoom);
    }
    const rowH = 20;
    const height = Math.max(1, lanes.length) * rowH + 16;
    chart.setAttribute("width", String(width));
    chart.setAttribute("height", String(height));
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const parts = [];
    lanes.forEach((lane, index) => {
      const y = index * rowH;
      const label = svg("text", { x: 0, y: y + rowH - 6, class: "rnb-lane-label" });
      label.textContent = lane.name;
      parts.push(label, svg("rect", { x: labelW, y: y + 3, width: width - labelW - 4,
        height: rowH - 6, class: "rnb-lane" }));
      for (const b of lane.bars) {
        const end = LIVE.has(b.outcome) ? now : b.end;
        if (end < start0 || b.start > end0) continue;
        const start = Math.max(b.start, start0);
        const mark = svg("rect", {
          x: (labelW + (start - start0) * scale).toFixed(1), y: y + 3,
          width: Math.max(4, (end - start) * scale).toFixed(1), height: rowH - 6,
          fill: colour(b.outcome), class: "rnb-bar", "data-outcome": b.outcome,
          "data-run-id": b.run_id, rx: 2,
        });
        const tip = svg("title");
        tip.textContent = LIVE.has(b.outcome) ? `${b.label} · ${span(now - b.start)}` : b.label;
        mark.appendChild(tip);
        mark.addEventListener("click", () => {
          openRuns.add(b.run_id);
          closedRuns.delete(b.run_id);
          model.set("selected", lane.name);
          model.save_changes();
          drawRuns(model.get("data") || {});
        });
        parts.push(mark);
      }
    });
    const axis = svg("text", { x: labelW, y: height - 2, class: "rnb-axis" });
    const nowLabel = svg("text", { x: width - 4, y: height - 2, "text-anchor": "end",
      class: "rnb-axis" });
    if (moving) {
      axis.textContent = `${span(windowS)} ago`;
      nowLabel.textContent = "now";
    } else {
      const fmt = clockFmt(data.tz);
      axis.textContent = fmt.format(new Date(start0 * 1000));
      nowLabel.textContent = fmt.format(new Date(end0 * 1000));
    }
    parts.push(axis, nowLabel);
    chart.replaceChildren(...parts);
  }

  // --- recent runs: updated in place, so an opened run stays open ----------------------
  function makeRunView(run) {
    const item = h("details", { className: "rnb-run", "data-run-id": run.run_id });
    const summary = h("summary");
    const badge = h("span", { className: "rnb-badge" });
    const when = h("span", { className: "rnb-run-start" });
    const took = h("span", { className: "rnb-run-took" });
    const where = h("span", { className: "rnb-run-scheduler" });
    summary.append(badge, when, took, where);
    const noteLine = h("div", { className: "rnb-run-note" });
    const output = h("pre", { className: "rnb-output" });
    const traceback = h("pre", { className: "rnb-traceback" });
    const displays = h("div", { className: "rnb-displays" });
    const none = h("div", { className: "rnb-hint" }, "No output.");
    item.append(summary, noteLine, output, displays, traceback, none);
    item.addEventListener("toggle", () => {
      if (item.open) { openRuns.add(run.run_id); closedRuns.delete(run.run_id); }
      else { openRuns.delete(run.run_id); closedRuns.add(run.run_id); }
    });
    return { item, badge, when, took, where, noteLine, output, traceback, displays, none, run,
      displayKey: "" };
  }

  function drawDisplays(view, run) {
    const key = JSON.stringify(run.displays || []);
    if (key === view.displayKey) return;
    view.displayKey = key;
    view.displays.replaceChildren();
    for (const d of run.displays || []) {
      if (d.kind === "html") {
        // No scripts, no same-origin, no forms: the frame can only show the markup.
        const frame = h("iframe", { className: "rnb-display-html", sandbox: "",
          title: "rich output of the run (sandboxed)" });
        frame.srcdoc = d.content;
        view.displays.appendChild(frame);
      } else if (d.kind === "image" && d.content.startsWith("data:image/")) {
        view.displays.appendChild(h("img", { className: "rnb-display-image", src: d.content,
          alt: "image output of the run" }));
      } else {
        view.displays.appendChild(h("pre", { className: "rnb-output" }, d.content));
      }
    }
  }

  function drawRuns(data) {
    const selected = data.selected || "";
    if (selected !== runsOf) {
      runsBox.replaceChildren();
      runViews.clear();
      runsOf = selected;
    }
    let heading = runsBox.querySelector(".rnb-runs-heading");
    if (!heading) {
      heading = h("div", { className: "rnb-heading rnb-runs-heading" });
      runsBox.appendChild(heading);
    }
    if (!selected) {
      setText(heading, "Click a task's name (or a run in the timeline) to see its recent runs.");
      return;
    }
    setText(heading, (data.runs || []).length ? `Recent runs of ${selected}`
      : `Recent runs of ${selected}: none yet.`);
    const seen = new Set();
    let previous = heading;
    const runs = data.runs || [];
    runs.forEach((run, index) => {
      seen.add(run.run_id);
      let view = runViews.get(run.run_id);
      if (!view) {
        view = makeRunView(run);
        runViews.set(run.run_id, view);
        // The newest run opens by itself unless the user closed it.
        if (index === 0 && !closedRuns.has(run.run_id)) openRuns.add(run.run_id);
      }
      view.run = run;
      if (previous.nextSibling !== view.item) previous.after(view.item);
      previous = view.item;
      const wantOpen = openRuns.has(run.run_id);
      if (view.item.open !== wantOpen) view.item.open = wantOpen;
      setText(view.badge, run.action);
      view.badge.dataset.badge = run.action;
      view.badge.style.background = colour(run.action);
      setText(view.when, ` ${run.start_clock}`);
      if (!run.live) setText(view.took, `  ${run.runtime_text}`);
      setText(view.where, run.scheduler ? `  on ${run.scheduler}` : "");
      setText(view.noteLine, run.note || "");
      setText(view.output, run.output);
      view.output.hidden = !run.output;
      setText(view.traceback, run.exc_text);
      view.traceback.hidden = !run.exc_text;
      drawDisplays(view, run);
      view.none.hidden = Boolean(run.output || run.exc_text || (run.displays || []).length);
    });
    for (const [id, view] of runViews) {
      if (!seen.has(id)) { view.item.remove(); runViews.delete(id); }
    }
  }

  function drawFleet(data) {
    const fleet = data.schedulers || [];
    const key = JSON.stringify(fleet);
    if (fleetBox.dataset.key === key) return;
    fleetBox.dataset.key = key;
    fleetBox.replaceChildren();
    fleetBox.hidden = !fleet.length;
    if (!fleet.length) return;
    fleetBox.appendChild(h("span", { className: "rnb-heading" }, "Schedulers on this log: "));
    fleet.forEach((s, index) => {
      if (index) fleetBox.appendChild(document.createTextNode(" · "));
      const item = h("span", { className: "rnb-fleet-item", "data-state": s.state,
        "data-this": s.this ? "1" : "" }, s.name);
      item.title = `lease ${s.lease}…, since ${s.since_clock}`;
      const words = [s.this ? "this one" : "", s.state === "alive" ? "" : s.state]
        .filter(Boolean);
      if (words.length) {
        item.appendChild(h("span", { className: "rnb-fleet-state" }, ` (${words.join(", ")})`));
      }
      fleetBox.appendChild(item);
    });
  }

  function drawCluster(data) {
    const c = data.cluster;
    const key = JSON.stringify(c || null);
    if (clusterLine.dataset.key === key) return;
    clusterLine.dataset.key = key;
    clusterLine.replaceChildren();
    clusterLine.hidden = !c;
    if (!c) return;
    const noun = c.workers === 1 ? "worker" : "workers";
    clusterLine.appendChild(document.createTextNode(
      `Dask cluster: ${c.address}, ${c.workers} ${noun}`));
    // Only a web address becomes a link (the kernel already dropped any other kind).
    if (c.dashboard && /^https?:\/\//i.test(c.dashboard)) {
      clusterLine.appendChild(document.createTextNode(", "));
      clusterLine.appendChild(h("a", { className: "rnb-dashboard", href: c.dashboard,
        target: "_blank", rel: "noopener noreferrer" }, "dashboard"));
    }
  }

  function draw() {
    const data = model.get("data") || {};
    const errors = model.get("errors") || {};
    const sched = data.scheduler || { state: "stopped", detail: "" };
    disconnected = sched.state === "disconnected";
    const busy = sched.state === "stopping" || sched.state === "restarting";
    setText(state, `Scheduler: ${sched.state}${busy ? "…" : ""}`);
    state.dataset.state = sched.state;
    setText(detail, sched.detail ? `(${sched.detail})` : "");
    setText(warningText, sched.warning || "");
    warningLine.hidden = !sched.warning;
    dismiss.hidden = !sched.dismissible;
    warningLine.style.color = (model.get("protocol") || {}).warning_colour || "";
    root.classList.toggle("rnb-disconnected", disconnected);
    setText(message, model.get("message") || "");
    setText(note, data.note || "");
    drawFleet(data);
    drawCluster(data);
    const seen = new Set();
    for (const row of data.tasks || []) {
      seen.add(row.name);
      let parts = rows.get(row.name);
      if (!parts) {
        parts = makeRow(row.name);
        rows.set(row.name, parts);
      }
      if (body.lastChild !== parts.tr) body.appendChild(parts.tr); // the data's order
      updateRow(parts, row, errors);
    }
    for (const [name, parts] of rows) {
      if (!seen.has(name)) {
        parts.tr.remove();
        rows.delete(name);
      }
    }
    for (const button of allButtons) {
      if (disconnected) button.disabled = true;
      else if (button.dataset.action !== "terminate") button.disabled = false;
    }
    empty.style.display = seen.size ? "none" : "";
    drawRuns(data);
    const now = kernelNow();
    drawTimes(now);
    drawTimeline(true);
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

  // Nothing to do while the tab is hidden or the panel is scrolled out of view.
  let onScreen = true;
  const tick = () => {
    if (document.hidden || !onScreen || disconnected) return;
    const now = kernelNow();
    drawTimes(now);
    drawTimeline(false);
  };
  const ticker = setInterval(tick, 1000);
  const onVisible = () => { if (!document.hidden) tick(); };
  document.addEventListener("visibilitychange", onVisible);
  // The timeline follows the notebook column's width.
  const resize = typeof ResizeObserver === "function"
    ? new ResizeObserver(() => drawTimeline(false)) : null;
  if (resize) resize.observe(timelineBox);
  const sight = typeof IntersectionObserver === "function"
    ? new IntersectionObserver((entries) => {
      onScreen = entries.some((entry) => entry.isIntersecting);
      if (onScreen) tick();
    }) : null;
  if (sight) sight.observe(root);
  return () => {
    clearInterval(ticker);
    if (sight) sight.disconnect();
    document.removeEventListener("visibilitychange", onVisible);
    if (resize) resize.disconnect();
    model.off("msg:custom", onReply);
    model.off("change:data", fresh);
    model.off("change:errors", redraw);
    model.off("change:message", redraw);
    model.off("change:selected", redraw);
  };
}

export default { render };
