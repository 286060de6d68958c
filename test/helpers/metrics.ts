/** Reading a Prometheus text exposition and capturing pino lines in tests. */
import { Writable } from "node:stream";
import type { Logger } from "pino";
import { createLogger } from "../../src/logger.ts";

/** Samples of a text exposition: `name{labels}` -> value. */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Metric family names declared by `# TYPE` lines. */
export const families = (text: string) => new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));

export interface CapturedLogs {
  /** Every JSON line written so far, parsed. */
  lines: Record<string, unknown>[];
  logger: Logger;
}

/** A pino logger (the production one, src/logger.ts) writing to memory instead of stdout. */
export function captureLogs(level = "debug"): CapturedLogs {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line.trim()) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: createLogger(level, {}, stream) };
}

/** A TCP port nothing listens on right now (bound, read, released). */
export function freePort(): number {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = server.port!;
  server.stop(true);
  return port;
}
