// One stream (a SKU at a location): its strongly consistent position, the projection's
// view of it, a timeline of on hand / reserved / available, and every event as a row.

import { api, seg } from "../api.js";
import { timelineChart } from "../chart.js";
import { h, num, problemBox, table, time } from "../dom.js";

/** Events read at most, the latest ones (the API reads at most 1000 a request). */
export const MAX_EVENTS = 2000;
const PAGE = 1000;

const NAMES = {
  StockItemCreated: "Created",
  StockReceived: "Received",
  StockAdjusted: "Adjusted",
  StockReserved: "Reserved",
  ReservationReleased: "Reservation released",
  ReservationFulfilled: "Reservation fulfilled",
  StockCounted: "Counted",
  StockPolicyChanged: "Policy changed",
};

/** "Stockstream.StockReserved.v1" -> "Reserved"; an unknown type in words. */
export function eventName(type) {
  const name = String(type || "").split(".")[1] || String(type || "event");
  return NAMES[name] || name.replace(/([a-z])([A-Z])/g, "$1 $2");
}

function signed(n) {
  return n > 0 ? `+${num(n)}` : num(n);
}

function reasonOf(d) {
  if (d.reason_code) return d.reason_code;
  if (d.reason) return d.reason;
  if (d.superseded) return "superseded by a later count";
  return "—";
}

function idOf(d) {
  if (d.order_id) return [h("span", { class: "kind" }, "order "), d.order_id];
  if (d.count_id) return [h("span", { class: "kind" }, "count "), d.count_id];
  return "—";
}

function detailsOf(name, d) {
  const parts = [];
  if (name === "StockAdjusted" && d.delta !== undefined) parts.push(`${signed(d.delta)} units`);
  if (name === "StockCounted") {
    parts.push(`counted ${num(d.counted)} (on hand was ${num(d.previous_on_hand)}, ${signed(d.delta)})`);
    if (d.counted_at) parts.push(`at ${new Date(d.counted_at).toISOString().slice(0, 16).replace("T", " ")} UTC`);
  } else if (name === "StockReserved") {
    parts.push(`${num(d.quantity)} units${d.previous_quantity ? ` (was ${num(d.previous_quantity)})` : ""}`);
  } else if (name === "StockPolicyChanged") {
    parts.push(`safety stock ${num(d.safety_stock)}, oversell buffer ${num(d.oversell_buffer)}`);
  } else if (d.quantity !== undefined) {
    parts.push(`${num(d.quantity)} units`);
  }
  if (d.channel) parts.push(`channel ${d.channel}`);
  if (d.reference) parts.push(`ref. ${d.reference}`);
  if (d.note) parts.push(`“${d.note}”`);
  if (d.from && d.to) parts.push(`${d.from} → ${d.to}`);
  return parts.join("; ") || "—";
}

/** The events after `after`, oldest first, following pages of at most 1000. */
async function readEvents(sku, where, after, signal) {
  const events = [];
  let cursor = after;
  for (;;) {
    const page = await api(`stock/${seg(sku)}/${seg(where)}/events?after=${cursor}&limit=${PAGE}`,
      { signal });
    events.push(...page);
    if (page.length < PAGE) return events;
    cursor = page[page.length - 1].sequence;
  }
}

/** Rows for the table: each event with the change in available it made. */
export function historyRows(events, previousAvailable) {
  let before = previousAvailable;
  return events.map((event) => {
    const d = event.data || {};
    const name = String(event.type || "").split(".")[1] || "";
    const change = before === null || d.available === undefined ? null : d.available - before;
    if (d.available !== undefined) before = d.available;
    return { event, d, name, change };
  });
}

function positionSummary(position, projected) {
  const items = [
    ["On hand", num(position.on_hand)],
    ["Reserved", num(position.reserved)],
    ["Available", num(position.available)],
    ["Safety stock", num(position.safety_stock)],
    ["Oversell buffer", num(position.oversell_buffer)],
    ["Version", num(position.version)],
  ];
  if (position.sellable !== undefined) items.splice(1, 0, ["Sellable", num(position.sellable)]);
  if (position.held) {
    items.splice(2, 0, ["Damaged", num(position.held.damaged)],
      ["Quality control", num(position.held.quality_control)]);
  }
  if (position.incoming_total !== undefined) items.push(["Incoming", num(position.incoming_total)]);
  const list = h("dl", { class: "figures" },
    items.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
  let projection;
  if (projected === undefined) {
    projection = h("p", {}, "Projection: not read (see the message above).");
  } else if (projected === null) {
    projection = h("p", { class: "warn" }, "Projection: no row for this location yet.");
  } else {
    const behind = position.version - projected.version;
    projection = h("p", { class: behind === 0 ? null : "warn" },
      `Projection (what channels read): available ${num(projected.available)} at version `,
      `${num(projected.version)}`,
      behind === 0 ? ", in step with the stream" : `, ${behind} version${Math.abs(behind) === 1 ? "" : "s"} behind the stream`,
      " (updated ", time(projected.updated_at), ").");
  }
  const parts = [list, projection];
  if (position.incoming && position.incoming.length) {
    parts.push(table("Incoming supply", [
      { label: "Reference", value: (i) => i.reference },
      { label: "Quantity", class: "n", value: (i) => num(i.quantity) },
      { label: "Expected", value: (i) => time(i.expected_at) },
    ], position.incoming));
  }
  if (position.reservations && position.reservations.length) {
    parts.push(table(`Open reservations (${position.reservations.length})`, [
      { label: "Order", value: (r) => r.order_id },
      { label: "Quantity", class: "n", value: (r) => num(r.quantity) },
      { label: "Channel", value: (r) => r.channel },
      { label: "Expires", value: (r) => time(r.expires_at) },
    ], position.reservations));
  }
  return parts;
}

export async function render(main, { sku, location: where }, { signal, rerender }) {
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the stream…"));
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: `#/stock/${seg(sku)}` }, `${sku} at every location`)),
    h("h1", {}, h("span", { class: "id" }, sku), " at ", h("span", { class: "id" }, where)),
    body);

  let position;
  try {
    position = await api(`stock/${seg(sku)}/${seg(where)}`, { signal });
  } catch (error) {
    if (error.name === "AbortError") return null;
    body.replaceChildren(problemBox(error, rerender));
    body.removeAttribute("aria-busy");
    return null;
  }
  const after = Math.max(0, position.version - MAX_EVENTS);
  const [events, projection] = await Promise.all([
    readEvents(sku, where, after, signal).catch((error) => error),
    api(`availability/${seg(sku)}`, { signal }).catch((error) => error),
  ]);
  if (signal.aborted) return null;
  body.removeAttribute("aria-busy");
  const parts = [h("h2", {}, "Position now")];
  let projected;
  if (projection instanceof Error) {
    parts.push(problemBox(projection, rerender));
  } else {
    projected = projection.locations.find((l) => l.location === where) || null;
  }
  parts.push(...positionSummary(position, projected));
  if (events instanceof Error) {
    body.replaceChildren(...parts, h("h2", {}, "History"), problemBox(events, rerender));
    return null;
  }
  if (events.length === 0) {
    body.replaceChildren(...parts, h("h2", {}, "History"),
      h("p", { class: "empty" }, `No event recorded for ${sku} at ${where}: the position is all zeros.`));
    return null;
  }
  // The first event read follows version `after`: before it, available is unknown
  // unless the stream is read from its start (available was 0 before version 1).
  const rows = historyRows(events, after === 0 ? 0 : null);
  const chartBox = h("div", { class: "chart", role: "img",
    "aria-label": `On hand, reserved and available of ${sku} at ${where} after each of `
      + `${events.length} events; the table below lists the same figures.` });
  const onlyChanges = h("input", { type: "checkbox", id: "only-changes" });
  const newestFirst = [...rows].reverse();
  const columns = [
    { label: "Version", class: "n", value: (r) => num(r.event.sequence) },
    { label: "Time", value: (r) => time(r.event.time) },
    { label: "Event", value: (r) => eventName(r.event.type) },
    { label: "Reason", value: (r) => reasonOf(r.d) },
    { label: "Order or count", value: (r) => idOf(r.d) },
    { label: "Details", value: (r) => detailsOf(r.name, r.d) },
    { label: "On hand", class: "n", value: (r) => num(r.d.on_hand) },
    { label: "Reserved", class: "n", value: (r) => num(r.d.reserved) },
    { label: "Available", class: "n", value: (r) => num(r.d.available) },
    { label: "Change in available", class: "n",
      value: (r) => (r.change === null ? "—" : r.change === 0 ? "0" : signed(r.change)) },
  ];
  const history = table(
    `Events of ${sku} at ${where}, newest first${after ? ` (the latest ${events.length})` : ""}`,
    columns, newestFirst,
    { rowClass: (r) => (r.change ? "changed" : r.change === 0 ? "unchanged" : null) });
  history.querySelectorAll("tbody tr").forEach((tr, i) => {
    tr.id = `event-${newestFirst[i].event.sequence}`;
  });
  onlyChanges.addEventListener("change", () => {
    history.querySelector("table").classList.toggle("only-changes", onlyChanges.checked);
  });
  const changed = rows.filter((r) => r.change).length;
  body.replaceChildren(...parts,
    h("h2", {}, "Timeline"), chartBox,
    h("h2", {}, "History"),
    h("p", {}, `${events.length} event${events.length === 1 ? "" : "s"}`,
      after ? ` (the latest; ${after} older ones not shown)` : "",
      `, ${changed} of which changed availability (marked).`),
    h("div", { class: "check" }, onlyChanges,
      h("label", { for: "only-changes" }, "Show only the events that changed availability")),
    history);
  const removeChart = timelineChart(chartBox, events);
  return removeChart;
}
