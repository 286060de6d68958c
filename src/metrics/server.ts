/**
 * The HTTP server of a standalone supervisor (`bun run supervisor`): GET /metrics (this
 * process's registry) and GET /healthz, on AGENTQ_SUPERVISOR_METRICS_PORT (0: a random free
 * port, logged). A process that also runs the API (`bun run start`) serves /metrics there instead.
 */
import type { Server } from "bun";
import type { Logger } from "pino";
import { exposition, type Metrics } from "./registry.ts";

export function serveMetrics(options: { metrics: Metrics; hostname: string; port: number; logger: Logger }): Server<undefined> {
  const { metrics, logger } = options;
  const server = Bun.serve({
    hostname: options.hostname,
    port: options.port,
    async fetch(request) {
      const { pathname } = new URL(request.url);
      if (request.method !== "GET" && request.method !== "HEAD") return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
      if (pathname === "/metrics") {
        const { contentType, body } = await exposition(metrics);
        return new Response(body, { headers: { "content-type": contentType } });
      }
      if (pathname === "/healthz") return Response.json({ status: "ok" });
      return new Response("not found: try /metrics or /healthz\n", { status: 404 });
    },
  });
  logger.info({ host: options.hostname, port: server.port }, "supervisor metrics listening on /metrics");
  return server;
}
