// The timeline chart of a stream: on hand, reserved and available after each event, as
// steps over time (uPlot, vendored). The history table beside it carries the same
// figures for anyone who cannot see the chart.

import uPlot from "./vendor/uplot/uPlot.esm.js";

const SERIES = [
  { key: "on_hand", label: "On hand", stroke: "#1f5fbf", dash: [] },
  { key: "reserved", label: "Reserved", stroke: "#b45309", dash: [6, 4] },
  { key: "available", label: "Available", stroke: "#15803d", dash: [] },
];

/** Column data for uPlot from CloudEvents (oldest first): seconds, then each series. */
export function timelineData(events) {
  const xs = [];
  const columns = SERIES.map(() => []);
  for (const event of events) {
    const seconds = Date.parse(event.time) / 1000;
    if (Number.isNaN(seconds)) continue;
    xs.push(seconds);
    SERIES.forEach((s, i) => columns[i].push(event.data ? event.data[s.key] ?? null : null));
  }
  return [xs, ...columns];
}

/**
 * Draw the timeline into `container`; returns a function that removes it (and stops
 * following the container's width).
 */
export function timelineChart(container, events) {
  const data = timelineData(events);
  const width = () => Math.max(280, Math.floor(container.clientWidth || 600));
  const stepped = uPlot.paths.stepped({ align: 1 });
  const chart = new uPlot({
    width: width(),
    height: 260,
    scales: { x: { time: true } },
    series: [
      { label: "Time (UTC)", value: (u, v) => (v == null ? "—" : new Date(v * 1000).toISOString().replace("T", " ").slice(0, 19)) },
      ...SERIES.map((s) => ({
        label: s.label, stroke: s.stroke, width: 2, dash: s.dash, paths: stepped,
        points: { show: data[0].length < 60 },
      })),
    ],
    axes: [{ stroke: "#333" }, { stroke: "#333", label: "units" }],
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
  }, data, container);
  const observer = new ResizeObserver(() => chart.setSize({ width: width(), height: 260 }));
  observer.observe(container);
  return () => {
    observer.disconnect();
    chart.destroy();
  };
}
