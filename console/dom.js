// Small DOM helpers shared by the views. Text from the API is only ever set as text
// (never parsed as HTML), so a reference or note cannot inject markup.

import { currentKey, saveKey } from "./api.js";

/** h("p", {class: "x"}, "text", child, ...): an element; null/false children are skipped. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** A number as the tables show it (a dash for none). */
export function num(value) {
  return value === null || value === undefined ? "—" : Number(value).toLocaleString("en");
}

/** An ISO time as "2026-12-02 14:05:09 UTC", inside a <time> element. */
export function time(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const text = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return h("time", { datetime: date.toISOString() }, text);
}

/** Seconds as "42 s", "3 min 5 s", "2 h 4 min". */
export function age(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  const s = Math.round(Number(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/**
 * What went wrong, in words: the problem document's title and detail (and each field
 * error). With a 401, a form to enter the key follows; `retry` runs once one is saved.
 */
export function problemBox(error, retry) {
  const isApi = error && typeof error.title === "string";
  const title = isApi ? error.title : "Something went wrong";
  const detail = isApi ? error.detail : String(error && error.message ? error.message : error);
  const box = h("div", { class: "problem", role: "alert" },
    h("p", { class: "problem-title" }, h("strong", {}, title),
      isApi && error.status ? ` (${error.status})` : ""),
    detail ? h("p", { class: "problem-detail" }, detail) : null,
    isApi && error.errors.some((e) => e.message !== detail)  // not the detail again
      ? h("ul", {}, error.errors.map((e) => h("li", {}, h("code", {}, e.field), `: ${e.message}`)))
      : null);
  if (isApi && error.needsKey) {
    box.append(h("p", {}, currentKey()
      ? "The key kept for this session was not accepted here. Enter another:"
      : "This host needs a key. Enter one:"), keyForm(retry));
  }
  return box;
}

let keyForms = 0;

/** The key form: saved in this tab's session storage, sent as x-functions-key. */
export function keyForm(onSaved) {
  const id = `key-${++keyForms}`;
  const input = h("input", {
    id, name: "key", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, placeholder: "function or admin key",
  });
  const form = h("form", { class: "key-form", "aria-label": "Enter a key" },
    h("label", { for: id }, "API key"),
    input,
    h("button", { type: "submit" }, "Use this key"),
    currentKey()
      ? h("button", {
        type: "button", class: "secondary",
        onclick: () => { saveKey(""); if (onSaved) onSaved(); },
      }, "Forget the key")
      : null);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveKey(input.value.trim());
    if (onSaved) onSaved();
  });
  return form;
}

/** A table that turns into labelled cards at phone width (CSS uses data-label). */
export function table(caption, columns, rows, { rowClass } = {}) {
  return h("div", { class: "table-wrap" },
    h("table", { class: "cards" },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", { class: rowClass ? rowClass(row) : null },
        columns.map((c, i) => h(i === 0 ? "th" : "td",
          { scope: i === 0 ? "row" : null, "data-label": c.label, class: c.class },
          c.value(row))))))));
}

/** Show `message` in the page's live region (read out by screen readers). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  region.textContent = message;
}
