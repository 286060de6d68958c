/**
 * HTML responses of the browser pages (/swagger and /dashboard): escaping, and the headers
 * every page carries, above all a Content-Security-Policy that lets the page load and
 * connect to nothing but our own origin.
 */

/**
 * Our origin only: scripts, styles, fonts, fetches and EventSources. No inline script or
 * style element, no eval, no plugins, no framing, forms post only to us. `data:` is allowed
 * for images alone: Swagger UI's stylesheet embeds its icons as data: URLs; a data: image
 * loads nothing from anywhere.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe for an HTML text node or a quoted attribute value. */
export const escapeHtml = (value: string) => value.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

export interface PageOptions {
  status?: number;
  /** `no-store` for pages that carry a session's CSRF token; omitted when unset. */
  cacheControl?: string;
  headers?: Record<string, string>;
}

export function htmlPage(html: string, options: PageOptions = {}): Response {
  const headers: Record<string, string> = {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    ...options.headers,
  };
  if (options.cacheControl) headers["cache-control"] = options.cacheControl;
  return new Response(html, { status: options.status ?? 200, headers });
}
