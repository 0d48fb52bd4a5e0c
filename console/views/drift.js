// The latest drift reports of count sessions (GET /api/reports/drift), with their charts.
// Charts are fetched with the key and shown from a blob: an <img src> cannot send it.

import { api, seg } from "../api.js";
import { h, num, problemBox, table, time } from "../dom.js";

const LIMIT = 5;

function chartImage(chart, alt, urls, signal) {
  const figure = h("figure", { class: "report-chart" },
    h("p", { class: "loading" }, "Loading the chart…"), h("figcaption", {}, alt));
  api(chart.url, { as: "blob", signal }).then((blob) => {
    const url = URL.createObjectURL(blob);
    urls.push(url);
    figure.firstChild.replaceWith(h("img", { src: url, alt }));
  }).catch((error) => {
    if (error.name !== "AbortError") figure.firstChild.replaceWith(problemBox(error));
  });
  return figure;
}

function drifts(caption, rows) {
  return table(caption, [
    { label: "SKU-location", value: (r) => (r.sku && r.location
      ? h("a", { href: `#/stock/${seg(r.sku)}/${seg(r.location)}` }, `${r.sku} at ${r.location}`)
      : "—") },
    { label: "Count", value: (r) => r.count_id || "—" },
    { label: "Counted", class: "n", value: (r) => num(r.counted) },
    { label: "On hand at count", class: "n", value: (r) => num(r.on_hand_at_count) },
    { label: "Drift", class: "n", value: (r) => (r.drift_units == null ? "—" : `${r.drift_units > 0 ? "+" : ""}${num(r.drift_units)}`) },
    { label: "Drift %", class: "n", value: (r) => (r.drift_percent == null ? "—" : `${r.drift_percent.toFixed(1)} %`) },
    { label: "Expired units", class: "n", value: (r) => num(r.expired_units) },
    { label: "Outcome", value: (r) => [r.outcome, r.reason ? ` (${r.reason})` : ""] },
  ], rows);
}

function reportSection(report, urls, signal) {
  const t = report.totals;
  const id = `report-${report.session_id}`;
  const distribution = report.charts.find((c) => c.name.endsWith("-distribution.png"));
  return h("section", { class: "report", "aria-labelledby": id },
    h("h2", { id }, "Session ", h("span", { class: "id" }, report.session_id)),
    h("p", {}, "Finished ", time(report.finished_at),
      report.source ? [" from ", h("code", {}, report.source)] : "",
      report.applied_none ? h("strong", { class: "warn" }, " — nothing applied (all or nothing)") : ""),
    h("dl", { class: "figures" },
      [["Rows", t.rows], ["Applied", t.applied], ["Unchanged", t.unchanged], ["Held", t.held],
        ["Rejected", t.rejected], ["With drift", t.with_drift],
        ["Absolute drift", t.abs_drift_units], ["Net drift", t.net_drift_units],
        ["Largest drift", t.max_abs_drift_units],
        ["Mean |drift| %", t.mean_abs_drift_percent == null ? null : t.mean_abs_drift_percent.toFixed(1)],
        ["Units expired", t.expired_units]]
        .map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value == null ? "—" : num(value))))),
    report.top_drifts.length
      ? drifts(`Largest drifts of session ${report.session_id}`, report.top_drifts)
      : h("p", { class: "empty" }, "No count in this session drifted."),
    report.held.length ? drifts(`Held for approval in session ${report.session_id}`, report.held) : null,
    distribution
      ? chartImage(distribution, `Distribution of the drifts of session ${report.session_id}`, urls, signal)
      : h("p", { class: "hint" }, report.charts_skipped || "No chart was written for this session."));
}

export async function render(main, _params, { signal, rerender }) {
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the reports…"));
  main.append(h("h1", {}, "Drift reports"),
    h("p", {}, "Drift = counted − on hand at count time. A drift that matches expired ",
      "units points at goods never put back on the shelf; a growing drift at a pipeline bug."),
    body);
  const urls = [];
  let answer;
  try {
    answer = await api(`reports/drift?limit=${LIMIT}`, { signal });
  } catch (error) {
    if (error.name === "AbortError") return null;
    body.replaceChildren(problemBox(error, rerender));
    body.removeAttribute("aria-busy");
    return null;
  }
  body.removeAttribute("aria-busy");
  const cleanup = () => urls.forEach((u) => URL.revokeObjectURL(u));
  if (!answer.reports.length) {
    body.replaceChildren(h("p", { class: "empty" },
      "No drift report yet. ", h("code", {}, "stockstream reconcile FILE"),
      " writes one per count session into the data directory's reports folder."));
    return cleanup;
  }
  const over = answer.reports.map((r) => r.charts.find((c) => c.name === "drift-history.png")).find(Boolean);
  body.replaceChildren(...[
    h("p", {}, `The latest ${answer.reports.length} session${answer.reports.length === 1 ? "" : "s"}, newest first.`),
    over ? [h("h2", {}, "Drift over time"), chartImage(over, "Absolute and net drift and mean |drift| % per count session over time", urls, signal)] : [],
    answer.reports.map((r) => reportSection(r, urls, signal)),
  ].flat());
  return cleanup;
}
