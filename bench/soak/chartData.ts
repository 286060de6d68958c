/** What the soak's chart page (bench/soak/chart/page.ts, in Chromium) is given to draw. */
export interface ChartSeries {
  label: string;
  /** One value per time; null where there is none (a trend line before the warm-up). */
  values: (number | null)[];
  /** Trend lines are dashed and thin. */
  trend?: boolean;
  /** The scale (and axis) it is drawn on; panels with two units put the second on the right. */
  scale: string;
}

export interface ChartPanel {
  title: string;
  /** Axis label per scale, in order of first use: the first on the left, a second on the right. */
  scales: { key: string; label: string }[];
  series: ChartSeries[];
}

export interface ChartData {
  title: string;
  /** Minutes since the steady load started. */
  minutes: number[];
  /** The warm-up ends here (minutes); it is shaded. */
  warmupMinutes: number;
  panels: ChartPanel[];
}
