// The console's shell: hash routes, navigation, focus, the key panel and confirmations.
//
// Routes (deep links a ticket can carry):
//   #/                          SKU lookup
//   #/stock/{sku}               the SKU at every location
//   #/stock/{sku}/{location}    one stream: position, timeline chart and history
//   #/pipeline                  pipeline health and dead-letter replay
//   #/drift                     the latest drift reports
// Orders have no page yet: they arrive with issue 15.

import { currentKey } from "./api.js";
import { h, keyForm } from "./dom.js";
import * as drift from "./views/drift.js";
import * as history from "./views/history.js";
import * as pipeline from "./views/pipeline.js";
import * as stock from "./views/stock.js";

const main = document.getElementById("main");
let current = null; // { controller, cleanup }

/** The view for a hash: its module, its parameters and its navigation entry. */
export function route(hash) {
  const path = (hash || "").replace(/^#\/?/, "");
  const parts = path === "" ? [] : path.split("/").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts.length === 0) return { view: stock, params: {}, nav: "stock" };
  if (parts[0] === "stock" && parts.length === 2 && parts[1]) {
    return { view: stock, params: { sku: parts[1] }, nav: "stock" };
  }
  if (parts[0] === "stock" && parts.length === 3 && parts[1] && parts[2]) {
    return { view: history, params: { sku: parts[1], location: parts[2] }, nav: "stock" };
  }
  if (parts[0] === "pipeline" && parts.length === 1) return { view: pipeline, params: {}, nav: "pipeline" };
  if (parts[0] === "drift" && parts.length === 1) return { view: drift, params: {}, nav: "drift" };
  return { view: null, params: { path }, nav: null };
}

function notFound(target, params) {
  target.append(
    h("h1", { tabindex: "-1" }, "No such page"),
    h("p", {}, `Nothing lives at #/${params.path}. `,
      h("a", { href: "#/" }, "Look up a SKU"), " instead."));
}

async function show({ focus = true } = {}) {
  if (current) {
    current.controller.abort();
    if (current.cleanup) current.cleanup();
  }
  const { view, params, nav } = route(location.hash);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const controller = new AbortController();
  current = { controller, cleanup: null };
  main.replaceChildren();
  const context = {
    signal: controller.signal,
    // Redrawing replaces whatever had focus: the heading takes it, not the document.
    rerender: () => show(),
    confirm,
  };
  if (!view) {
    notFound(main, params);
  } else {
    const rendering = view.render(main, params, context);
    // The heading is there before the data: focus it so keyboard and screen-reader
    // users start at the new page, not at the top of the document.
    if (focus) focusHeading();
    try {
      current.cleanup = (await rendering) || null;
    } catch (error) {
      if (error.name !== "AbortError") throw error;
    }
    return;
  }
  if (focus) focusHeading();
}

function focusHeading() {
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
}

/** Ask before something that changes state; resolves true only on "confirm". */
export function confirm({ title, text, action }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "confirm");
    }, { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus(); // the safe choice first
  });
}

function setUpKeyPanel() {
  const slot = document.getElementById("key-slot");
  const panel = document.getElementById("key-panel");
  const summary = panel.querySelector("summary");
  const refresh = () => {
    summary.textContent = currentKey() ? "Key: set" : "Key";
    slot.replaceChildren(
      h("p", { class: "hint" }, "Only needed when the host has keys. Kept in this tab ",
        "until it closes, and sent as x-functions-key."),
      keyForm(() => {
        panel.open = false;
        refresh();
        show();
      }));
  };
  document.addEventListener("keychange", refresh);
  refresh();
}

function setUpSkipLink() {
  // A plain #main link would replace the route in the hash.
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
}

setUpSkipLink();
setUpKeyPanel();
window.addEventListener("hashchange", () => show());
show({ focus: false }).then(() => {
  const first = main.querySelector("input");
  if (first && !location.hash.replace(/^#\/?/, "")) first.focus();
});
