// Pipeline health: the outbox, each subscription (active, dead-lettered, lag) with a
// replay of its dead letters (after a confirmation), and the projections' positions.

import { api, seg } from "../api.js";
import { age, announce, h, num, problemBox, table, time } from "../dom.js";

const REFRESH_MS = 10_000;
// What a figure the host cannot measure reads (it is null in the status, never 0).
const NOT_MEASURED = "not measured";

function health(status) {
  const dead = status.subscriptions.reduce((n, s) => n + s.dead_lettered, 0);
  const notes = [];
  if (dead) notes.push(`${num(dead)} dead-lettered message${dead === 1 ? "" : "s"}`);
  if (status.outbox.depth) notes.push(`${num(status.outbox.depth)} event(s) waiting in the outbox`);
  if (notes.length) return h("p", { class: "warn health" }, "Needs attention: ", notes.join(", "), ".");
  const missing = (status.unmeasured || []).length;
  return missing
    ? h("p", { class: "warn health" }, "Nothing waiting or dead-lettered among what was measured; ",
      `${num(missing)} figure${missing === 1 ? " is" : "s are"} not measured on this host (below).`)
    : h("p", { class: "ok health" }, "Healthy: nothing waiting, nothing dead-lettered.");
}

// The figures this host cannot measure, each with the reason the status gives.
function unmeasured(rows) {
  if (!rows.length) return [];
  return [
    h("h2", {}, "Not measured"),
    table("Figures this host cannot measure", [
      { label: "Figure", value: (u) => u.field },
      { label: "Why", value: (u) => u.reason },
    ], rows),
  ];
}

export async function render(main, _params, { signal, rerender, confirm }) {
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the status…"));
  const outcome = h("div", { class: "outcome", id: "replay-outcome", tabindex: "-1" });
  main.append(h("h1", {}, "Pipeline health"), outcome, body);

  async function replay(subscription) {
    const ok = await confirm({
      title: `Replay ${subscription.name}'s dead letters?`,
      text: `${num(subscription.dead_lettered)} dead-lettered message(s) will be published `
        + `again to the subscription ${subscription.name} only; other subscriptions do not `
        + "see them. Messages that fail again are dead-lettered again.",
      action: "Replay",
    });
    if (!ok) {
      announce("Replay cancelled.");
      return;
    }
    try {
      const answer = await api(`ops/deadletters/${seg(subscription.name)}/replay`,
        { method: "POST", body: {} });
      const text = `Replayed ${num(answer.replayed)} message${answer.replayed === 1 ? "" : "s"} `
        + `to ${subscription.name}.`;
      outcome.replaceChildren(h("p", { class: "ok", role: "status" }, text));
      announce(text);
    } catch (error) {
      outcome.replaceChildren(problemBox(error, () => replay(subscription)));
    }
    await load();
    outcome.focus(); // the button that had focus was redrawn
  }

  async function load() {
    let status;
    try {
      status = await api("ops/status", { signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      body.replaceChildren(problemBox(error, rerender));
      body.removeAttribute("aria-busy");
      return;
    }
    body.removeAttribute("aria-busy");
    body.replaceChildren(
      health(status),
      h("p", { class: "hint" }, "Read at ", time(new Date().toISOString()),
        `; refreshed every ${REFRESH_MS / 1000} s while this page is open. `,
        h("button", { type: "button", class: "secondary", onclick: () => load() }, "Refresh now")),
      h("h2", {}, "Outbox"),
      h("dl", { class: "figures" },
        h("div", {}, h("dt", {}, "Events not yet published"),
          h("dd", {}, status.outbox.depth == null ? NOT_MEASURED : num(status.outbox.depth))),
        h("div", {}, h("dt", {}, "Oldest waiting"),
          h("dd", {}, status.outbox.oldest_age_seconds == null ? "none" : age(status.outbox.oldest_age_seconds)))),
      h("h2", {}, "Subscriptions"),
      status.subscriptions.length
        ? table("Subscriptions of the inventory-events topic", [
          { label: "Subscription", value: (s) => s.name },
          { label: "Active", class: "n", value: (s) => num(s.active) },
          { label: "Dead-lettered", class: "n", value: (s) => num(s.dead_lettered) },
          { label: "Lag", class: "n", value: (s) => (s.lag_seconds == null ? NOT_MEASURED : age(s.lag_seconds)) },
          { label: "Dead letters", value: (s) => h("button", {
            type: "button", disabled: s.dead_lettered === 0,
            "aria-label": `Replay the dead letters of ${s.name}`,
            onclick: () => replay(s),
          }, s.dead_lettered ? `Replay ${num(s.dead_lettered)}` : "None to replay") },
        ], status.subscriptions, { rowClass: (s) => (s.dead_lettered ? "gap" : null) })
        : h("p", { class: "empty" }, "No subscriptions on this host."),
      h("h2", {}, "Projections"),
      status.projections.length
        ? table("Projections", [
          { label: "Projection", value: (p) => p.name },
          { label: "Position", class: "n", value: (p) => num(p.position) },
          { label: "Lag", class: "n", value: (p) => (p.lag_seconds == null ? NOT_MEASURED : age(p.lag_seconds)) },
        ], status.projections)
        : h("p", { class: "empty" }, "No projections on this host."),
      ...unmeasured(status.unmeasured || []));
  }

  await load();
  const timer = setInterval(() => {
    // Do not redraw under a keyboard user's feet or behind the confirmation.
    if (document.getElementById("confirm").open || body.contains(document.activeElement)) return;
    load();
  }, REFRESH_MS);
  return () => clearInterval(timer);
}
