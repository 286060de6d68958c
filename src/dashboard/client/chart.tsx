/**
 * The coverage history as a uPlot line chart: one point per history row (points always
 * drawn), oldest on the left, from 0 %. After each draw the container's `data-points` says how
 * many points uPlot drew (the series' visible index range), for tests and for the caption.
 */
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { HistoryEntry } from "./types.ts";

const HEIGHT = 260;

export function HistoryChart({ history }: { history: HistoryEntry[] }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const rows = [...history].sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
    const xs = rows.map((r) => Date.parse(r.timestamp) / 1000);
    const ys = rows.map((r) => r.overall_coverage);
    const options: uPlot.Options = {
      width: Math.max(320, el.clientWidth),
      height: HEIGHT,
      // From 0 to a little above the highest point (at most 100 %), so a slow climb is visible.
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.min(100, Math.max(10, Math.ceil((max * 1.15) / 10) * 10))] } },
      legend: { show: true },
      cursor: { points: { size: 8 } },
      series: [
        { label: "Time" },
        {
          label: "Coverage",
          stroke: "#2563eb",
          width: 2,
          fill: "rgba(37, 99, 235, 0.08)",
          points: { show: true, size: 7, stroke: "#2563eb", fill: "#ffffff" },
          value: (_u, v) => (v === null || v === undefined ? "–" : `${v.toFixed(2)}%`),
        },
      ],
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, space: 110 },
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, values: (_u, ticks) => ticks.map((t) => `${t}%`) },
      ],
      hooks: {
        draw: [
          (u) => {
            const idxs = u.series[1]?.idxs;
            el.dataset.points = String(idxs && u.data[0].length > 0 ? idxs[1] - idxs[0] + 1 : 0);
          },
        ],
      },
    };
    const plot = new uPlot(options, [xs, ys], el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(320, el.clientWidth), height: HEIGHT }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [history]);
  return <div class="chart" ref={ref} data-rows={history.length} />;
}
