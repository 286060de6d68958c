/**
 * The HTTP application factory. It never listens: `bun run api` and tests
 * (through `app.handle(new Request(...))`) decide how it is served.
 */
import { Elysia } from "elysia";
import { openapi } from "@elysiajs/openapi";
import type { AppDeps } from "./deps.ts";
import { jsonBody } from "./body.ts";
import { toErrorResponse } from "./errors.ts";
import { AppError } from "../core/errors.ts";
import { systemRoutes } from "./system/index.ts";
import { taxonomyRoutes } from "./taxonomies/index.ts";
import { documentRoutes } from "./documents/index.ts";
import { agentRoutes } from "./agents/index.ts";
import { taskRoutes } from "./tasks/index.ts";
import { createMetrics } from "../metrics/registry.ts";
import { httpTelemetry } from "../metrics/http.ts";

export const API_PREFIX = "/api/v1";

/**
 * Authentication runs on request arrival, before routing, parsing and
 * validation: an unauthenticated caller learns nothing but 401.
 */
function apiKeyGuard(deps: AppDeps) {
  return async ({ request }: { request: Request }) => {
    const path = new URL(request.url).pathname;
    if (path !== API_PREFIX && !path.startsWith(`${API_PREFIX}/`)) return;
    const key = request.headers.get("x-api-key");
    if (!key) throw new AppError("unauthorized", "missing X-API-Key header");
    if (!(await deps.keys.verify(key))) throw new AppError("unauthorized", "unknown or revoked API key");
  };
}

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
  const deps = { ...appDeps, metrics: appDeps.metrics ?? createMetrics({}, { processMetrics: false }) };
  const api = new Elysia({ prefix: API_PREFIX })
    .use(taxonomyRoutes(deps))
    .use(documentRoutes(deps))
    .use(agentRoutes(deps))
    .use(taskRoutes(deps));

  const root = new Elysia({ name: "agentq", normalize: false });
  // Request ids, request logs and HTTP metrics (by route template): src/metrics/http.ts.
  const http = httpTelemetry(deps.metrics, deps.logger, () => root.routes);
  return root
    .onRequest(http.onRequest)
    .onAfterResponse({ as: "global" }, http.onAfterResponse)
    .onAfterHandle(documentJsonBodies(() => root.routes))
    .use(
      openapi({
        path: OPENAPI_PATH,
        provider: "swagger-ui",
        documentation: {
          info: {
            title: "agentq",
            version: "0.1.0",
            description: "Background coverage refreshes for knowledge agents. Every /api/v1 route needs an X-API-Key header.",
          },
          components: {
            securitySchemes: { apiKey: { type: "apiKey", in: "header", name: "X-API-Key" } },
          },
          security: [{ apiKey: [] }],
        },
      }),
    )
    .error({ AppError })
    .onError({ as: "global" }, ({ code, error, set, request }) => {
      const mapped = toErrorResponse(code, error);
      if (mapped.internal)
        deps.logger.error({ err: error, method: request.method, url: request.url, request_id: http.requestId(request) }, "request failed");
      set.status = mapped.status;
      set.headers["content-type"] = "application/json";
      return mapped.body;
    })
    .onRequest(apiKeyGuard(deps))
    .use(jsonBody(deps.config.maxBodyBytes))
    .use(systemRoutes(deps))
    .use(api);
}

export type App = ReturnType<typeof createApp>;
