/** Helpers of the ops/ checks: repository paths, YAML files, promtool, runbook anchors. */
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..", "..");
export const repoPath = (...parts: string[]) => join(ROOT, ...parts);

export async function readYaml<T = unknown>(...parts: string[]): Promise<T> {
  return Bun.YAML.parse(await Bun.file(repoPath(...parts)).text()) as T;
}

/**
 * Runs promtool (Debian's `prometheus` package; .ci/run installs it). Not skipped when
 * missing: these checks are part of CI.
 */
export function promtool(...args: string[]): { code: number; output: string } {
  if (!Bun.which("promtool")) throw new Error("promtool not found: apt-get install prometheus (see .ci/run)");
  const result = Bun.spawnSync(["promtool", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode, output: `${result.stdout.toString()}${result.stderr.toString()}` };
}

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens. */
export function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** Anchors of every Markdown heading outside code fences. */
export function markdownAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    else if (!fenced) {
      const heading = /^#{1,6}\s+(.*)$/.exec(line);
      if (heading) anchors.add(headingAnchor(heading[1]!));
    }
  }
  return anchors;
}

/** "40s", "2m", "1m30s" (systemd and compose durations) in milliseconds. */
export function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
  let total = 0;
  const rest = text.trim().replace(/(\d+(?:\.\d+)?)\s*(ms|min|s|m|h)/g, (_, value: string, unit: string) => {
    total += Number(value) * units[unit]!;
    return "";
  });
  if (rest.trim() !== "" || total === 0) throw new Error(`not a duration: ${text}`);
  return total;
}
