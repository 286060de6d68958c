/** Unauthenticated operational endpoints. */
import { Elysia, t } from "elysia";
import { sql } from "drizzle-orm";
import type { AppDeps } from "../deps.ts";

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

export const systemRoutes = (deps: AppDeps) =>
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
    );
