/**
 * The HTTP application factory. It never listens: `bun run api` and tests
 * (through `app.handle(new Request(...))`) decide how it is served.
 */
import { Elysia } from "elysia";
import { openapi } from "@elysiajs/openapi";
import { installStringFormats } from "./formats.ts";
import type { AppDeps } from "./deps.ts";
import { jsonBody } from "./body.ts";
import { errorForLog, toErrorResponse } from "./errors.ts";
import { AppError } from "../core/errors.ts";
import type { Config } from "../config.ts";
import { systemRoutes } from "./system/index.ts";
import { taxonomyRoutes } from "./taxonomies/index.ts";
import { documentRoutes } from "./documents/index.ts";
import { agentRoutes } from "./agents/index.ts";
import { taskRoutes } from "./tasks/index.ts";
import { taskConsoleRoutes } from "./tasks/console.ts";
import { scheduleRoutes } from "./schedules/index.ts";
import { webhookRoutes } from "./webhooks/index.ts";
import { workerRoutes } from "./workers/index.ts";
import { createMetrics } from "../metrics/registry.ts";
import { eventRoutes, liveEventParts } from "./events/index.ts";
import { httpTelemetry } from "../metrics/http.ts";
import { swaggerUi } from "../dashboard/swaggerUi.ts";
import { DashboardAuth } from "../dashboard/auth.ts";
import { DASHBOARD_PATH, dashboardRoutes } from "../dashboard/index.ts";
import type { Principal } from "../dashboard/sessions.ts";
import { keyPrincipal, rateLimitCheck } from "./rateLimit.ts";
import { RateLimits } from "../queue/rateLimits.ts";
import { queueKeys } from "../queue/keys.ts";

export const API_PREFIX = "/api/v1";

/**
 * Authentication runs on request arrival, before routing, parsing and
 * validation: an unauthenticated caller learns nothing but 401. Then the
 * caller's rate limit (src/api/rateLimit.ts): only a known caller spends a budget.
 */
function apiKeyGuard(deps: AppDeps, dashboard: DashboardAuth | null, rateLimit: ReturnType<typeof rateLimitCheck>) {
  return async ({ request, set }: { request: Request; set: { headers: Record<string, unknown> } }) => {
    const path = new URL(request.url).pathname;
    if (path !== API_PREFIX && !path.startsWith(`${API_PREFIX}/`)) return;
    const key = request.headers.get("x-api-key");
    let caller: Principal;
    // The dashboard's pages call the API with their session cookie instead of a key (src/dashboard/auth.ts).
    if (!key && dashboard?.hasSessionCookie(request)) caller = (await dashboard.authorizeApiRequest(request)).principal;
    else {
      if (!key) throw new AppError("unauthorized", "missing X-API-Key header");
      if (!(await deps.keys.verify(key))) throw new AppError("unauthorized", "unknown or revoked API key");
      caller = keyPrincipal(key, deps.config.apiKeys);
    }
    await rateLimit(request, path, caller, set.headers);
  };
}

/**
 * Headers on every response the app makes: `nosniff` everywhere (no browser guesses a
 * JSON error to be HTML), and `no-store` on the API (its answers are per key and change).
 * Set on arrival, so error responses and 401s carry them too.
 */
function securityHeaders({ request, set }: { request: Request; set: { headers: Record<string, unknown> } }) {
  set.headers["x-content-type-options"] = "nosniff";
  const path = new URL(request.url).pathname;
  if (path === API_PREFIX || path.startsWith(`${API_PREFIX}/`)) set.headers["cache-control"] = "no-store";
}

/**
 * Bun answers some requests itself, before the app sees them, with an empty body: a body
 * over `maxRequestBodySize` (413), a header block over 16 KiB or more than about 200 header
 * fields (431, configurable only by `bun --max-http-header-size`), and requests it cannot
 * parse (400). Bun has no hook for any of these. The body limit can be moved out of the way:
 * it is set far above the app's own (src/api/body.ts), which refuses a declared or streamed
 * body over AGENTQ_MAX_BODY_BYTES with a 413 in the error shape and reads no more of it.
 * The header and parse limits remain Bun's (README, "Limits").
 */
export const BUN_MAX_REQUEST_BODY_BYTES = Number.MAX_SAFE_INTEGER;

/** What `bun run api` and `bun run start` hand to `app.listen`. */
export const listenOptions = (config: Pick<Config, "host" | "port">) => ({
  hostname: config.host,
  port: config.port,
  maxRequestBodySize: BUN_MAX_REQUEST_BODY_BYTES,
});

interface RouteEntry {
  method: string;
  path: string;
  hooks?: { body?: unknown };
}

/**
 * The OpenAPI plugin documents a request body only for routes with a named
 * parser; ours (body.ts) is a function, so it would publish `content: {}`.
 * This fills in each route's JSON body schema when the spec is served.
 */
function documentJsonBodies(routes: () => readonly RouteEntry[]) {
  return ({ request, responseValue }: { request: Request; responseValue: unknown }) => {
    if (request.method !== "GET" || new URL(request.url).pathname !== OPENAPI_SPEC_PATH) return;
    const paths = (responseValue as { paths?: Record<string, Record<string, { requestBody?: { content?: Record<string, unknown> } }>> })?.paths;
    if (!paths) return;
    for (const route of routes()) {
      if (!route.hooks?.body) continue;
      const operation = paths[route.path.replace(/:([^/]+)/g, "{$1}")]?.[route.method.toLowerCase()];
      if (operation?.requestBody && Object.keys(operation.requestBody.content ?? {}).length === 0)
        operation.requestBody.content = { "application/json": { schema: route.hooks.body } };
    }
  };
}

const OPENAPI_PATH = "/swagger";
const OPENAPI_SPEC_PATH = `${OPENAPI_PATH}/json`;

export function createApp(appDeps: AppDeps) {
  // After the openapi plugin's import replaced TypeBox's format validators (src/api/formats.ts).
  installStringFormats();
  // Live events (SSE): this process's publisher (new and cancelled tasks) and its hub of streams.
  const live = liveEventParts(appDeps);
  appDeps = { ...appDeps, taskEvents: live.taskEvents, liveEvents: live.liveEvents };
  const deps = { ...appDeps, metrics: appDeps.metrics ?? createMetrics({}, { processMetrics: false }) };
  const rateLimits =
    deps.rateLimits ??
    new RateLimits(deps.redis, queueKeys(deps.config.redisPrefix), {
      limits: { enqueue: deps.config.rateLimitEnqueue, read: deps.config.rateLimitRead },
      windowS: deps.config.rateLimitWindowS,
      logger: deps.logger,
      metrics: deps.metrics,
    });
  // AGENTQ_DASHBOARD_ENABLED=false: no /dashboard route, and no session cookie opens the API.
  const dashboard = deps.config.dashboardEnabled
    ? new DashboardAuth({ config: deps.config, redis: deps.redis, db: deps.database.db, keys: deps.keys })
    : null;
  const api = new Elysia({ prefix: API_PREFIX })
    .use(taxonomyRoutes(deps))
    .use(documentRoutes(deps))
    .use(agentRoutes(deps))
    .use(taskConsoleRoutes(deps))
    .use(taskRoutes(deps))
    .use(scheduleRoutes(deps))
    .use(webhookRoutes(deps))
    .use(workerRoutes(deps));

  const root = new Elysia({ name: "agentq", normalize: false });
  // Request ids, request logs and HTTP metrics (by route template): src/metrics/http.ts.
  const http = httpTelemetry(deps.metrics, deps.logger, () => root.routes);
  const app = root
    .onRequest(http.onRequest)
    .onRequest(securityHeaders)
    .onAfterResponse({ as: "global" }, http.onAfterResponse)
    .onAfterHandle(documentJsonBodies(() => root.routes))
    .use(
      openapi({
        path: OPENAPI_PATH,
        // The plugin's page loads Swagger UI from a CDN: ours (swaggerUi below) serves it from our origin.
        provider: null,
        documentation: {
          info: {
            title: "agentq",
            version: "0.1.0",
            description:
              "Background coverage refreshes for knowledge agents. Every /api/v1 route needs an X-API-Key header, and is rate limited per key: " +
              "the routes that create tasks on one budget, the others on another (429 rate_limited with Retry-After; RateLimit-Policy and RateLimit fields on every counted response).",
          },
          components: {
            securitySchemes: { apiKey: { type: "apiKey", in: "header", name: "X-API-Key" } },
          },
          security: [{ apiKey: [] }],
        },
      }),
    )
    .use(swaggerUi({ path: OPENAPI_PATH, specPath: OPENAPI_SPEC_PATH, title: "agentq", ...(dashboard ? { dashboardPath: DASHBOARD_PATH } : {}) }))
    .error({ AppError })
    .onError({ as: "global" }, ({ code, error, set, request }) => {
      let mapped: ReturnType<typeof toErrorResponse>;
      let failure: unknown = error;
      try {
        mapped = toErrorResponse(code, error);
      } catch (formatting) {
        // Never Elysia's text/plain "Something went wrong!": the shape holds even if mapping fails.
        mapped = { status: 500, body: { error: { code: "internal_error", message: "internal error" } }, internal: true };
        failure = formatting;
      }
      if (mapped.internal)
        deps.logger.error(
          { err: errorForLog(failure), method: request.method, url: request.url.slice(0, 2048), request_id: http.requestId(request) },
          "request failed",
        );
      set.status = mapped.status;
      set.headers["content-type"] = "application/json";
      // The rest of a refused body is not read: end the connection instead of draining it.
      if (mapped.status === 413) set.headers.connection = "close";
      return mapped.body;
    })
    .onRequest(apiKeyGuard(deps, dashboard, rateLimitCheck(rateLimits)))
    // Before the JSON body parser: the dashboard's sign-in and sign-out forms are url-encoded.
    .use(dashboardRoutes(deps, dashboard))
    .use(jsonBody(deps.config))
    .use(systemRoutes(deps))
    .use(api)
    .use(new Elysia({ prefix: API_PREFIX }).use(eventRoutes({ ...deps, liveEvents: live.liveEvents })));
  // A graceful server.stop() waits for every open response, and a live-event stream ends only
  // when its client leaves: the streams are ended (connections reset) first.
  const stop = app.stop;
  app.stop = (closeActiveConnections?: boolean) => {
    live.close();
    return stop(closeActiveConnections);
  };
  return app;
}

export type App = ReturnType<typeof createApp>;
