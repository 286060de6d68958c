/**
 * GET /workers: the live supervisors and their task slots, from their capacity heartbeats in
 * Redis (src/queue/capacity.ts): what the dashboard's overview shows as live workers. A
 * supervisor that stopped renewing its heartbeat (dead, or cut off from Redis) is not listed.
 */
import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { authErrors, Timestamp } from "../common.ts";
import { readCapacity } from "../../queue/capacity.ts";
import { queueKeys } from "../../queue/keys.ts";

export const Workers = t.Object({
  supervisors: t.Array(
    t.Object({
      supervisor_id: t.String(),
      task_slots: t.Integer({ minimum: 0, description: "Tasks it can run at once: worker threads x concurrency" }),
      busy: t.Integer({ minimum: 0, description: "Tasks running in them" }),
      heartbeat_expires_at: Timestamp,
    }),
  ),
  task_slots: t.Integer({ minimum: 0, description: "Summed over the live supervisors" }),
  busy: t.Integer({ minimum: 0 }),
  calculated_at: Timestamp,
});

export const workerRoutes = (deps: AppDeps) => {
  const keys = queueKeys(deps.config.redisPrefix);
  return new Elysia({ name: "agentq.workers", tags: ["operations"] }).get(
    "/workers",
    async () => {
      const now = Date.now();
      const live = await readCapacity(deps.redis, keys, now);
      return {
        supervisors: live.map((s) => ({
          supervisor_id: s.supervisorId,
          task_slots: s.workers,
          busy: s.busy,
          heartbeat_expires_at: new Date(s.expires).toISOString(),
        })),
        task_slots: live.reduce((n, s) => n + s.workers, 0),
        busy: live.reduce((n, s) => n + s.busy, 0),
        calculated_at: new Date(now).toISOString(),
      };
    },
    {
      response: { 200: Workers, ...authErrors },
      detail: {
        summary: "Live supervisors and their task slots",
        description:
          "From each supervisor's capacity heartbeat in Redis (renewed every third of AGENTQ_LEASE_MS): task_slots is worker threads x concurrency, busy the tasks running in them. A supervisor whose heartbeat lapsed is left out.",
      },
    },
  );
};
