/**
 * The soak chart, drawn in Chromium by uPlot (the library the dashboard's history chart uses),
 * bundled by Bun.build from node_modules (bench/soak/chart.ts): one panel per group of series,
 * the warm-up shaded, each judged series with its least-squares trend dashed beside it.
 * Reads its data from window.SOAK_CHART; sets body[data-ready] when every panel is drawn.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { ChartData } from "../chartData.ts";

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const WIDTH = 560;
const HEIGHT = 260;

const data = (window as unknown as { SOAK_CHART: ChartData }).SOAK_CHART;
const root = document.getElementById("charts")!;
document.getElementById("title")!.textContent = data.title;

/** Shades the warm-up, behind the series. */
const warmupBand = (warmup: number): uPlot.Plugin => ({
  hooks: {
    drawClear: (u: uPlot) => {
      const x0 = u.valToPos(0, "x", true);
      const x1 = u.valToPos(warmup, "x", true);
      u.ctx.save();
      u.ctx.fillStyle = "rgba(0, 0, 0, 0.06)";
      u.ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
      u.ctx.restore();
    },
  },
});

for (const panel of data.panels) {
  const box = document.createElement("div");
  box.className = "panel";
  root.appendChild(box);
  let colour = 0;
  const colourOf = new Map<string, string>();
  const series: uPlot.Series[] = [
    { label: "minutes" },
    ...panel.series.map((s) => {
      // A trend takes the colour of the series it follows (the one before it).
      const stroke = s.trend ? (colourOf.get("last") ?? "#777") : COLOURS[colour++ % COLOURS.length]!;
      if (!s.trend) colourOf.set("last", stroke);
      return { label: s.label, scale: s.scale, stroke, width: s.trend ? 1 : 1.5, dash: s.trend ? [6, 4] : undefined, points: { show: false }, spanGaps: false };
    }),
  ];
  const axes: uPlot.Axis[] = [
    { label: "minutes of steady load" },
    ...panel.scales.map((sc, i) => ({ scale: sc.key, label: sc.label, side: i === 0 ? 3 : 1, grid: { show: i === 0 }, size: 60 })),
  ];
  const scales: uPlot.Scales = { x: { time: false } };
  for (const sc of panel.scales) scales[sc.key] = { range: (_u: uPlot, min: number, max: number) => [Math.min(0, min), max <= 0 ? 1 : max * 1.1] };
  new uPlot(
    { title: panel.title, width: WIDTH, height: HEIGHT, series, axes, scales, legend: { show: true, live: false }, cursor: { show: false }, plugins: [warmupBand(data.warmupMinutes)] },
    [data.minutes, ...panel.series.map((s) => s.values)] as uPlot.AlignedData,
    box,
  );
}
document.body.dataset.ready = "1";
