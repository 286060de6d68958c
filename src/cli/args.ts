/** Tiny flag reader for our own commands: `--workers 4` or `--workers=4`. */
import type { Config } from "../config.ts";

export function flagValue(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === `--${name}`) return argv[i + 1];
    if (arg.startsWith(`--${name}=`)) return arg.slice(name.length + 3);
  }
  return undefined;
}

/** `--workers N` and `--concurrency C` as config overrides (validated with the rest of the config). */
export function engineFlags(argv: readonly string[]): Partial<Config> {
  const overrides: Partial<Config> = {};
  const workers = flagValue(argv, "workers");
  const concurrency = flagValue(argv, "concurrency");
  if (workers !== undefined) overrides.workers = Number(workers);
  if (concurrency !== undefined) overrides.workerConcurrency = Number(concurrency);
  return overrides;
}
