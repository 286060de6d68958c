/** The soak test's command line. */
import { parseFlags, type IntFlags } from "../flags.ts";
export interface SoakOptions {
  minutes: number;
  burn: number;
  workers: number;
  concurrency: number;
  clients: number;
  sseFirehose: number;
  sseFiltered: number;
  cancelEveryS: number;
  /** Share of webhook requests the receiver answers 503. */
  failPercent: number;
  writeDocs: boolean;
}

export const SECTION_TITLE = "## Soak test";

export const HELP = `usage: bun run bench soak [--minutes M] [--burn N] [--workers W] [--concurrency C] [--clients K]
                      [--sse-firehose F] [--sse-filtered S] [--cancel-every S] [--fail-percent P] [--no-docs]

  --minutes M        minutes of steady load (default 10; 1 for a quick check)
  --burn N           tiny refreshes (each with a webhook) of the capacity burn-down that comes first (default 3000)
  --workers W        worker threads of the supervisor process (default 2), --concurrency C tasks each (default 32)
  --clients K        HTTP clients sending the refreshes, together at half the measured capacity (default 8)
  --sse-firehose F   SSE clients on GET /events (default 4), --sse-filtered S on GET /events?agent_id= (default 16)
  --cancel-every S   every S seconds, a running refresh of the heavy agent is cancelled (default 5)
  --fail-percent P   the webhook receiver answers 503 to P% of requests at random (default 3)
  --no-docs          do not rewrite the "${SECTION_TITLE}" section of docs/benchmarks.md nor docs/images/soak.png

Database: BENCH_SOAK_DATABASE_URL, else agentq_bench_soak on the server of DATABASE_URL (created,
migrated, its tables truncated). Redis: REDIS_URL; only keys under "agentq-bench-soak:" are written
and deleted. Exit code 0 when every judged series is flat and the accounting balances, 1 otherwise.`;

export function parseSoakArgs(args: string[]): SoakOptions | string {
  const o: SoakOptions = {
    minutes: 10,
    burn: 3000,
    workers: 2,
    concurrency: 32,
    clients: 8,
    sseFirehose: 4,
    sseFiltered: 16,
    cancelEveryS: 5,
    failPercent: 3,
    writeDocs: true,
  };
  const ints: IntFlags<Exclude<keyof SoakOptions, "writeDocs">> = {
    "--minutes": ["minutes", 1, 240],
    "--burn": ["burn", 100, 1_000_000],
    "--workers": ["workers", 1, 64],
    "--concurrency": ["concurrency", 1, 256],
    "--clients": ["clients", 1, 256],
    "--sse-firehose": ["sseFirehose", 0, 1000],
    "--sse-filtered": ["sseFiltered", 0, 1000],
    "--cancel-every": ["cancelEveryS", 1, 600],
    "--fail-percent": ["failPercent", 0, 50],
  };
  const error = parseFlags(args, ints, (key, n) => (o[key] = n), (flag) => (flag === "--no-docs" ? ((o.writeDocs = false), 1) : 0));
  if (error) return error;
  return o;
}
