// bgjobs dashboard: confirm before an action; apply server-sent updates in place.
"use strict";
document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.matches("form.action") && !window.confirm(form.dataset.confirm || "Are you sure?")) {
    ev.preventDefault();
  }
});

function setProgress(row, percent) {
  if (percent === null || percent === undefined) return;
  let bar = row.querySelector('progress[data-role="progress"]');
  if (!bar) {
    const cell = row.querySelector(".progress");
    if (!cell) return;
    bar = document.createElement("progress");
    bar.dataset.role = "progress";
    bar.max = 100;
    cell.prepend(bar);
  }
  bar.value = percent;
  const pct = row.querySelector(".pct");
  if (pct) pct.textContent = percent + "%";
}

let reloadAt = 0;
function reloadSoon() {
  // A job the page does not show yet (created after it loaded): reload, at most every 3 s.
  const now = Date.now();
  if (now - reloadAt > 3000 && document.body.dataset.page === "jobs") {
    reloadAt = now;
    setTimeout(() => window.location.reload(), 500);
  }
}

function apply(msg) {
  if (msg.kind === "backgroundjobs") {
    const rows = document.querySelectorAll(`[data-role="job"][data-key="${CSS.escape(msg.key)}"]`);
    if (!rows.length && !msg.deleted) reloadSoon();
    rows.forEach((row) => {
      if (msg.deleted) { row.classList.add("deleted"); return; }
      row.dataset.phase = msg.phase;
      row.querySelectorAll(".phase, [data-role=phase]").forEach((el) => {
        const why = el.querySelector('[data-role="pending-reason"]');
        el.firstChild && el.firstChild.nodeType === 3 ? (el.firstChild.textContent = msg.phase + " ")
          : el.prepend(document.createTextNode(msg.phase + " "));
        if (why) { if (msg.pendingReason) why.textContent = msg.pendingReason; else why.remove(); }
      });
      setProgress(row, msg.percent);
    });
  } else if (msg.kind === "jobworkflows") {
    document.querySelectorAll(`[data-role="workflow"][data-key="${CSS.escape(msg.key)}"]`).forEach((el) => {
      el.dataset.phase = msg.phase;
      const p = el.querySelector('[data-role="phase"], .phase');
      if (p) p.textContent = msg.phase;
    });
    if (document.body.dataset.page === "workflow" && msg.steps) {
      for (const [step, phase] of Object.entries(msg.steps)) {
        const g = document.querySelector(`svg [data-role="step"][data-step="${CSS.escape(step)}"]`);
        if (!g) continue;
        g.dataset.phase = phase;
        const t = g.querySelector('[data-role="step-phase"]');
        if (t) t.textContent = phase;
      }
    }
  } else if (msg.kind === "jobqueues") {
    document.querySelectorAll(`[data-role="queue"][data-key="${CSS.escape(msg.key)}"]`).forEach((row) => {
      // Pause/resume buttons change with the state: a reload renders the right one.
      if (row.dataset.paused !== String(msg.paused)) { reloadAt = 0; window.location.reload(); return; }
      const w = row.querySelector('[data-role="waiting"]'); if (w) w.textContent = msg.waiting || 0;
      const r = row.querySelector('[data-role="running"]'); if (r) r.textContent = msg.running || 0;
    });
  }
}

window.addEventListener("DOMContentLoaded", () => {
  const ns = document.body.dataset.namespace;
  const params = new URLSearchParams({since: document.body.dataset.seq || ""});
  if (ns) params.set("namespace", ns);
  const src = new EventSource("/events?" + params.toString());
  src.addEventListener("update", (ev) => apply(JSON.parse(ev.data)));
});
