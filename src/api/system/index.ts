/** Unauthenticated operational endpoints. */
import { Elysia, t } from "elysia";
import { sql } from "drizzle-orm";
import type { AppDeps } from "../deps.ts";
import { exposition, type Metrics } from "../../metrics/registry.ts";

const Check = t.Object({ ok: t.Boolean(), error: t.Optional(t.String()) });
const Readiness = t.Object({
  status: t.Union([t.Literal("ready"), t.Literal("not_ready")]),
  checks: t.Object({ postgres: Check, redis: Check, draining: t.Boolean() }),
});

async function probe(run: () => Promise<unknown>, timeoutMs: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      run(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { ok: true };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

export const systemRoutes = (deps: AppDeps & { metrics: Metrics }) =>
  new Elysia({ name: "agentq.system", tags: ["operations"] })
    .get("/healthz", () => ({ status: "ok" as const }), {
      response: { 200: t.Object({ status: t.Literal("ok") }) },
      detail: { summary: "Liveness: the process answers", security: [] },
    })
    .get(
      "/readyz",
      async ({ status }) => {
        const [postgres, redis] = await Promise.all([
          probe(() => deps.database.db.execute(sql`select 1`), 2000),
          probe(() => deps.redis.ping(), 2000),
        ]);
        const draining = deps.isDraining?.() ?? false;
        const ready = postgres.ok && redis.ok && !draining;
        const body = { status: ready ? ("ready" as const) : ("not_ready" as const), checks: { postgres, redis, draining } };
        return ready ? body : status(503, body);
      },
      {
        response: { 200: Readiness, 503: Readiness },
        detail: { summary: "Readiness: PostgreSQL and Redis answer and the process is not draining", security: [] },
      },
    )
    .get(
      "/metrics",
      async ({ set }) => {
        // Never fails for a dependency: a gauge whose source is down is left out (and logged).
        const { contentType, body } = await exposition(deps.metrics);
        set.headers["content-type"] = contentType;
        return body;
      },
      {
        response: { 200: t.String({ description: "Prometheus text exposition format 0.0.4" }) },
        detail: {
          summary: "Prometheus metrics of this process",
          description:
            "Counters and histograms of what this process did, gauges read at scrape time (queue depth and oldest queued task from Redis, overdue tasks from PostgreSQL, worker threads when a supervisor runs in this process), build info and process metrics. No API key.",
          security: [],
        },
      },
    );
