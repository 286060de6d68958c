/**
 * One webhook delivery attempt: check the URL again (DNS may have changed),
 * connect to the address that was checked, POST the signed body, classify.
 *
 * Connecting by address defeats DNS rebinding: the request goes to the IP we
 * judged, with the original host in the Host header and, for https, in SNI and
 * the certificate check. Redirects are never followed (a 3xx could point inside).
 */
import { checkServerIdentity } from "node:tls";
import { checkWebhookUrl, UnsafeUrlError, type Resolver, type UrlPolicy } from "./urlSafety.ts";
import type { SignedHeaders } from "./signing.ts";

export type AttemptResult = "success" | "http_error" | "timeout" | "network_error" | "unsafe_url";

export interface AttemptOutcome {
  result: AttemptResult;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  /** Worth another attempt: 5xx, 408, 429, timeouts, connection and DNS errors. */
  retryable: boolean;
  /** From a Retry-After header, when the receiver sent one. */
  retryAfterMs: number | null;
}

export interface DeliveryRequest {
  url: string;
  body: string;
  headers: SignedHeaders;
}

export interface AttemptOptions {
  policy: UrlPolicy;
  resolve?: Resolver;
  timeoutMs: number;
  /** Aborts the attempt (sender shutdown); the attempt then rejects with the abort reason. */
  signal?: AbortSignal;
}

export const USER_AGENT = "agentq-webhooks/0.1";

const RETRYABLE_STATUS = (status: number) => status >= 500 || status === 408 || status === 429;

/** Retry-After as seconds or an HTTP date, in milliseconds from now. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** The URL with its host replaced by a checked address (IPv6 in brackets). */
function pinnedUrl(url: URL, address: string): string {
  const pinned = new URL(url.href);
  pinned.hostname = address.includes(":") ? `[${address}]` : address;
  return pinned.href;
}

export async function attemptDelivery(request: DeliveryRequest, options: AttemptOptions): Promise<AttemptOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const outcome = (result: AttemptResult, fields: Partial<AttemptOutcome>): AttemptOutcome => ({
    result,
    statusCode: null,
    error: null,
    retryable: false,
    retryAfterMs: null,
    ...fields,
    durationMs: elapsed(),
  });

  let target;
  try {
    target = await checkWebhookUrl(request.url, options.policy, options.resolve);
  } catch (error) {
    if (!(error instanceof UnsafeUrlError)) throw error;
    return error.transient
      ? outcome("network_error", { error: error.reason, retryable: true })
      : outcome("unsafe_url", { error: `unsafe webhook URL: ${error.reason}` });
  }

  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  const host = target.host;
  const tls =
    target.url.protocol === "https:"
      ? { serverName: host, checkServerIdentity: (_: string, cert: Parameters<typeof checkServerIdentity>[1]) => checkServerIdentity(host, cert) }
      : undefined;
  try {
    const response = await fetch(pinnedUrl(target.url, target.addresses[0]!), {
      method: "POST",
      body: request.body,
      headers: {
        host: target.url.host,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        ...request.headers,
      },
      redirect: "manual",
      signal,
      tls,
    });
    // The receiver's body is of no use to us; do not let a large one hold the connection.
    await response.body?.cancel().catch(() => {});
    const status = response.status;
    if (status >= 200 && status < 300) return outcome("success", { statusCode: status });
    if (status >= 300 && status < 400)
      return outcome("http_error", { statusCode: status, error: `redirect (HTTP ${status}) not followed` });
    return outcome("http_error", {
      statusCode: status,
      error: `HTTP ${status}`,
      retryable: RETRYABLE_STATUS(status),
      retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
    });
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason ?? error;
    if (timeout.aborted) return outcome("timeout", { error: `no answer within ${options.timeoutMs} ms`, retryable: true });
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return outcome("network_error", { error: message.slice(0, 500), retryable: true });
  }
}
