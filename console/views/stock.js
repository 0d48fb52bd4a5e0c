// SKU lookup, and a SKU at every location: the projection's availability beside each
// location's strongly consistent position, so a projection that lags is visible.

import { api, seg } from "../api.js";
import { h, num, problemBox, table, time } from "../dom.js";

const IDENTIFIER = "[A-Za-z0-9._\\-]{1,64}";

/** The lookup form (SKU, optional location); Enter submits. */
export function lookupForm({ sku = "", place = "" } = {}) {
  const skuInput = h("input", {
    id: "lookup-sku", name: "sku", required: true, pattern: IDENTIFIER, value: sku,
    autocomplete: "off", spellcheck: "false", "aria-describedby": "lookup-help",
  });
  const locationInput = h("input", {
    id: "lookup-location", name: "location", pattern: IDENTIFIER, value: place,
    autocomplete: "off", spellcheck: "false",
  });
  const form = h("form", { class: "lookup", role: "search", "aria-label": "Look up a SKU" },
    h("div", { class: "field" }, h("label", { for: "lookup-sku" }, "SKU"), skuInput),
    h("div", { class: "field" },
      h("label", { for: "lookup-location" }, "Location ", h("span", { class: "optional" }, "(optional)")),
      locationInput),
    h("button", { type: "submit" }, "Look up"),
    h("p", { id: "lookup-help", class: "hint" },
      "Letters, digits, dot, dash and underscore, up to 64. Without a location: every ",
      "location of the SKU; with one: that stream's history."));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = skuInput.value.trim();
    const where = locationInput.value.trim();
    const target = where ? `#/stock/${seg(wanted)}/${seg(where)}` : `#/stock/${seg(wanted)}`;
    if (window.location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else window.location.hash = target;
  });
  return form;
}

/** Fields that arrive with stock states (issue 17); shown only when the API sends them. */
const STATE_COLUMNS = [
  { key: "sellable", label: "Sellable", pick: (p) => p.sellable },
  { key: "damaged", label: "Damaged", pick: (p) => (p.held ? p.held.damaged : undefined) },
  { key: "quality_control", label: "Quality control",
    pick: (p) => (p.held ? p.held.quality_control : undefined) },
  { key: "incoming_total", label: "Incoming", pick: (p) => p.incoming_total },
  { key: "in_transit", label: "In transit", pick: (p) => p.in_transit },
];

function gapText(row) {
  if (row.error) return "stream unreadable";
  const behind = row.position.version - row.projected.version;
  if (behind === 0 && row.position.available === row.projected.available) return "in step";
  if (behind > 0) return `projection ${behind} version${behind === 1 ? "" : "s"} behind`;
  if (behind < 0) return "projection ahead of the stream";
  return "figures differ at the same version";
}

export async function render(main, params, { signal, rerender }) {
  if (!params.sku) {
    main.append(
      h("h1", {}, "Stock lookup"),
      h("p", {}, "Find a SKU's position at every location, or one location's history."),
      lookupForm());
    return null;
  }
  const { sku } = params;
  const results = h("section", { "aria-labelledby": "positions-title", "aria-busy": "true" },
    h("p", { class: "loading" }, "Loading positions…"));
  main.append(
    h("h1", {}, "SKU ", h("span", { class: "id" }, sku)),
    lookupForm({ sku }),
    results);

  let availability;
  try {
    availability = await api(`availability/${seg(sku)}`, { signal });
  } catch (error) {
    if (error.name === "AbortError") return null;
    results.replaceChildren(...[
      h("h2", { id: "positions-title" }, "Positions"),
      problemBox(error, rerender),
      error.status === 503 || error.status === 0
        ? h("p", {}, "Without the availability projection the console cannot list the SKU's ",
          "locations; enter a location above to read its stream directly.")
        : null,
    ].filter(Boolean));
    results.removeAttribute("aria-busy");
    return null;
  }
  const rows = await Promise.all(availability.locations.map(async (projected) => {
    try {
      const position = await api(`stock/${seg(sku)}/${seg(projected.location)}`, { signal });
      return { projected, position };
    } catch (error) {
      return { projected, position: null, error };
    }
  }));
  if (signal.aborted) return null;
  results.removeAttribute("aria-busy");
  if (rows.length === 0) {
    results.replaceChildren(
      h("h2", { id: "positions-title" }, "Positions"),
      h("p", { class: "empty" }, `No location has recorded ${sku} yet (the availability `,
        "projection knows none). A SKU-location that never had an event reads as all zeros."));
    return null;
  }
  const shown = STATE_COLUMNS.filter((c) => rows.some((r) =>
    (r.position && c.pick(r.position) !== undefined) || c.pick(r.projected) !== undefined));
  const stream = (pick) => (r) => (r.position ? num(pick(r.position)) : "—");
  const columns = [
    { label: "Location", value: (r) => h("a", {
      href: `#/stock/${seg(sku)}/${seg(r.projected.location)}`,
      "aria-label": `${r.projected.location}: history`,
    }, r.projected.location) },
    { label: "On hand", class: "n", value: stream((p) => p.on_hand) },
    { label: "Reserved", class: "n", value: stream((p) => p.reserved) },
    ...shown.map((c) => ({ label: c.label, class: "n",
      value: (r) => num(r.position && c.pick(r.position) !== undefined
        ? c.pick(r.position) : c.pick(r.projected)) })),
    { label: "Available (stream)", class: "n", value: stream((p) => p.available) },
    { label: "Available (projection)", class: "n", value: (r) => num(r.projected.available) },
    { label: "Version stream / projection", class: "n",
      value: (r) => `${r.position ? r.position.version : "—"} / ${r.projected.version}` },
    { label: "Projection", value: (r) => (r.error ? problemBox(r.error, rerender) : gapText(r)) },
  ];
  const gaps = rows.filter((r) => r.error || gapText(r) !== "in step").length;
  results.replaceChildren(
    h("h2", { id: "positions-title" }, "Positions"),
    h("p", { class: "summary" },
      `${rows.length} location${rows.length === 1 ? "" : "s"}. Across them (projection): `,
      h("strong", {}, num(availability.on_hand)), " on hand, ",
      h("strong", {}, num(availability.reserved)), " reserved, ",
      h("strong", {}, num(availability.available)), " available.",
      gaps ? h("span", { class: "warn" }, ` ${gaps} location${gaps === 1 ? "" : "s"} where the projection `,
        "is not in step with the stream yet.") : " The projection is in step with every stream."),
    table(`${sku} by location — the stream is strongly consistent; the projection is what `
      + "channels read and may lag", columns, rows,
    { rowClass: (r) => (r.error || gapText(r) !== "in step" ? "gap" : null) }),
    h("p", { class: "hint" }, "Projection rows updated: ",
      ...rows.map((r, i) => [i ? ", " : "", `${r.projected.location} `, time(r.projected.updated_at)])),
    h("button", { type: "button", class: "secondary", onclick: rerender }, "Refresh"));
  return null;
}
