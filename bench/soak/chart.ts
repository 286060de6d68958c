/**
 * The soak's chart as a PNG: the series drawn by uPlot (bench/soak/chart/page.ts, bundled by
 * Bun.build from node_modules: nothing fetched) in Debian's Chromium driven by playwright-core
 * (launched as the browser tests launch it), then screenshotted. The page is given as HTML
 * with the bundle inlined, so it loads nothing at all.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { launchBrowser } from "../../test/browser/support.ts";
import type { ChartData, ChartPanel, ChartSeries } from "./chartData.ts";
import type { SoakSample } from "./sampler.ts";
import type { Judged, SeriesSpec } from "./series.ts";

const PAGE_ENTRY = new URL("./chart/page.ts", import.meta.url).pathname;

const PANELS: Record<SeriesSpec["panel"], { title: string; scales: { key: string; label: string }[] }> = {
  rss: { title: "Resident set size (VmRSS)", scales: [{ key: "mb", label: "MB" }] },
  connections: { title: "PostgreSQL connections (pg_stat_activity)", scales: [{ key: "n", label: "connections" }] },
  redis: { title: "Redis", scales: [{ key: "mb", label: "used_memory, MB" }, { key: "kib", label: "soak prefix, KiB" }] },
  backlog: { title: "Backlog", scales: [{ key: "n", label: "items" }] },
};

function scaleOf(spec: SeriesSpec): string {
  if (spec.panel === "redis") return spec.unit === "MB" ? "mb" : "kib";
  return PANELS[spec.panel].scales[0]!.key;
}

export function chartData(title: string, samples: SoakSample[], judged: Judged[], warmupS: number): ChartData {
  const panels: ChartPanel[] = [];
  for (const [panel, meta] of Object.entries(PANELS) as [SeriesSpec["panel"], (typeof PANELS)["rss"]][]) {
    const series: ChartSeries[] = [];
    // The prefix's key count has no axis of its own; its bytes stand for the prefix in the chart.
    for (const j of judged.filter((x) => x.spec.panel === panel && x.spec.key !== "prefixKeys")) {
      const scale = scaleOf(j.spec);
      series.push({ label: `${j.spec.label}${j.spec.unit ? ` (${j.spec.unit})` : ""}`, scale, values: samples.map((s) => s[j.spec.key]) });
      const v = j.verdict;
      if (j.spec.bound && Number.isFinite(v.slope)) {
        // The fitted line, through the mean of the fitted samples, after the warm-up only.
        const fitted = samples.filter((s) => s.t >= warmupS);
        const meanT = fitted.reduce((a, s) => a + s.t, 0) / fitted.length;
        series.push({
          label: `trend ${v.pass ? "PASS" : "FAIL"} (${fmtGrowth(v.growth)}/10 min, allowed ${fmtGrowth(v.allowed)})`,
          scale,
          trend: true,
          values: samples.map((s) => (s.t >= warmupS ? v.mean + v.slope * (s.t - meanT) : null)),
        });
      }
    }
    panels.push({ title: meta.title, scales: meta.scales, series });
  }
  return { title, minutes: samples.map((s) => s.t / 60), warmupMinutes: warmupS / 60, panels };
}

const fmtGrowth = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(1) : x.toFixed(2));

async function bundlePage(): Promise<{ js: string; css: string }> {
  const result = await Bun.build({ entrypoints: [PAGE_ENTRY], target: "browser", format: "esm", minify: true, naming: "[name].[ext]" });
  if (!result.success) throw new AggregateError(result.logs, "the soak chart page does not build");
  let js = "";
  let css = "";
  for (const output of result.outputs) {
    if (output.path.endsWith(".js")) js = await output.text();
    else if (output.path.endsWith(".css")) css = await output.text();
  }
  return { js, css };
}

export async function renderChart(data: ChartData, pngPath: string): Promise<void> {
  const { js, css } = await bundlePage();
  const json = JSON.stringify(data).replaceAll("<", "\\u003c");
  const html = `<!doctype html><html><head><meta charset="utf-8"><style>${css}
body { font: 13px system-ui, sans-serif; margin: 12px; background: #fff; }
#charts { display: grid; grid-template-columns: repeat(2, 580px); gap: 8px; }
h1 { font-size: 15px; margin: 0 0 8px; }
.u-legend { font-size: 12px; }
</style></head><body><h1 id="title"></h1><div id="charts"></div>
<script>window.SOAK_CHART = ${json};</script><script type="module">${js.replaceAll("</script", "<\\/script")}</script></body></html>`;
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.route("**/*", (route) => route.abort());
    await page.setContent(html);
    await page.waitForSelector("body[data-ready]", { timeout: 30_000 });
    mkdirSync(dirname(pngPath), { recursive: true });
    await page.screenshot({ path: pngPath, fullPage: true });
  } finally {
    await browser.close();
  }
}
