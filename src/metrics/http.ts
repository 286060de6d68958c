/**
 * HTTP telemetry for the Elysia app: a request id on every request (an incoming X-Request-Id
 * when it looks sane, else a new UUID; always echoed in the response header), one JSON log
 * line per request carrying it, and agentq_http_requests_total /
 * agentq_http_request_duration_seconds labelled by method, ROUTE TEMPLATE and status.
 *
 * The template is Elysia's `route` (the path as registered, e.g. /api/v1/agents/:agent_id).
 * Requests answered before routing (401 from the API-key guard) have no `route`; they are
 * matched against the registered templates here. Anything else is `unmatched`, so a scanner
 * probing random paths cannot create new series.
 */
import type { Logger } from "pino";
import { StatusMap } from "elysia";
import type { Metrics } from "./registry.ts";

export const UNMATCHED_ROUTE = "unmatched";
export const REQUEST_ID_HEADER = "x-request-id";
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
/** Ids from a proxy or client: UUIDs, ULIDs, trace ids. Anything else (too long, spaces, quotes) is replaced. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;
/** Scraped and probed every few seconds: logged at debug, not info. */
const QUIET_ROUTES = new Set(["/metrics", "/healthz", "/readyz"]);

export function requestIdFrom(header: string | null | undefined): string {
  return header && SANE_REQUEST_ID.test(header) ? header : crypto.randomUUID();
}

export const methodLabel = (method: string) => (METHODS.has(method.toUpperCase()) ? method.toUpperCase() : "OTHER");

export function statusCode(status: unknown): number {
  if (typeof status === "number") return status;
  if (typeof status === "string") return (StatusMap as Record<string, number>)[status] ?? (Number(status) || 500);
  return 200;
}

interface RouteLike {
  method: string;
  path: string;
}

/** Matches a concrete path against registered templates (`:param` is one segment, `*` the rest). */
export class RouteMatcher {
  private compiled: { method: string; path: string; pattern: RegExp }[] = [];
  private compiledFrom = -1;

  constructor(private readonly routes: () => readonly RouteLike[]) {}

  match(method: string, path: string): string | null {
    const routes = this.routes();
    if (routes.length !== this.compiledFrom) {
      this.compiled = routes.map((r) => ({ method: r.method.toUpperCase(), path: r.path, pattern: templatePattern(r.path) }));
      this.compiledFrom = routes.length;
    }
    const m = method.toUpperCase();
    const hit =
      this.compiled.find((r) => r.method === m && r.pattern.test(path)) ?? this.compiled.find((r) => r.method === "ALL" && r.pattern.test(path));
    return hit?.path ?? null;
  }
}

function templatePattern(template: string): RegExp {
  const body = template
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      if (segment.startsWith(":")) return segment.endsWith("?") ? "[^/]*" : "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return new RegExp(`^${body}/?$`);
}

interface RequestState {
  id: string;
  start: number;
}

/** The hooks createApp installs; `requestId` lets other hooks (the error log) name the request. */
export function httpTelemetry(metrics: Metrics, logger: Logger, routes: () => readonly RouteLike[]) {
  const state = new WeakMap<Request, RequestState>();
  const matcher = new RouteMatcher(routes);
  return {
    requestId(request: Request): string | undefined {
      return state.get(request)?.id;
    },

    /** Runs first on every request: assigns the id and starts the clock. */
    onRequest({ request, set }: { request: Request; set: { headers: Record<string, unknown> } }) {
      const id = requestIdFrom(request.headers.get(REQUEST_ID_HEADER));
      state.set(request, { id, start: performance.now() });
      set.headers[REQUEST_ID_HEADER] = id;
    },

    /** Runs after every response, errors included. */
    onAfterResponse({ request, route, set, responseValue }: { request: Request; route?: string | null; set: { status?: unknown }; responseValue?: unknown }) {
      const s = state.get(request);
      const seconds = s ? (performance.now() - s.start) / 1000 : 0;
      // The URL is parsed only when it is needed: for a request no route matched, or for the log line.
      const pathOf = () => new URL(request.url).pathname;
      const template = route || matcher.match(request.method, pathOf()) || UNMATCHED_ROUTE;
      const status = responseValue instanceof Response ? responseValue.status : statusCode(set.status);
      const labels = { method: methodLabel(request.method), route: template, status: String(status) };
      metrics.httpRequests.inc(labels);
      metrics.httpRequestSeconds.observe(labels, seconds);
      const level = QUIET_ROUTES.has(template) && status < 400 ? "debug" : "info";
      if (!logger.isLevelEnabled(level)) return;
      logger[level](
        { request_id: s?.id, method: request.method, route: template, path: pathOf(), status, duration_ms: Math.round(seconds * 1000 * 10) / 10 },
        "request",
      );
    },
  };
}
