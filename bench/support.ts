/** What every benchmark shares: its command line, bounded concurrency and rewriting its own section of docs/benchmarks.md. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const DOCS_FILE = fileURLToPath(new URL("../docs/benchmarks.md", import.meta.url));

const DOCS_HEADER = [
  "# Benchmarks",
  "",
  "Each benchmark compares an implementation with a peer (a baseline) measured in the same run on",
  "the same machine, and reports the ratio. The ratios are the result; absolute times on a shared",
  "machine are noisy and only tell the order of magnitude. Run them with `bun run bench <name>`",
  "(`bun run bench --help` lists them); each run rewrites its own section below.",
  "",
].join("\n");

/**
 * The common command-line front: `--help` prints the help (exit 0); arguments that `parse`
 * refuses (it returns the reason as a string) print the reason and the help (exit 2).
 * Returns the options, or the exit code to return.
 */
export function parseCommandLine<T extends object>(args: string[], help: string, parse: (args: string[]) => T | string): T | number {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(help);
    return 0;
  }
  const opts = parse(args);
  if (typeof opts === "string") {
    console.error(`${opts}\n\n${help}`);
    return 2;
  }
  return opts;
}

/** Runs f(0..n-1) with at most `limit` calls in flight. */
export async function bounded(n: number, limit: number, f: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) await f(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
}

/**
 * Replaces the section headed `title` (a "## " line, up to the next "## " heading)
 * with `section`, or appends it; the rest of the text stays as is.
 */
export function replaceSection(text: string, title: string, section: string): string {
  const body = section.replace(/\n*$/, "\n");
  const start = text.startsWith(`${title}\n`) ? 0 : text.indexOf(`\n${title}\n`) + 1;
  if (start <= 0 && !text.startsWith(`${title}\n`)) return text.replace(/\n*$/, "\n\n") + body;
  const rest = text.slice(start + title.length);
  const next = rest.search(/\n## /);
  const after = next < 0 ? "" : rest.slice(next + 1);
  return (text.slice(0, start) + body + (after ? "\n" + after : "")).replace(/\n*$/, "\n");
}

/** Writes `section` (which starts with its `title` line) into docs/benchmarks.md. */
export function writeBenchmarkSection(title: string, section: string): void {
  const text = existsSync(DOCS_FILE) ? readFileSync(DOCS_FILE, "utf8") : DOCS_HEADER;
  mkdirSync(dirname(DOCS_FILE), { recursive: true });
  writeFileSync(DOCS_FILE, replaceSection(text, title, section));
}
