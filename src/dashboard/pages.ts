/**
 * The HTML the server renders: the sign-in page (a plain form, no script needed) and the
 * shell of the dashboard's pages (the client bundle draws them). Both load only our assets.
 */
import { escapeHtml } from "./html.ts";
import type { UiAssets } from "./uiAssets.ts";

function head(assets: UiAssets, title: string, meta: Record<string, string> = {}) {
  const { dashboard } = assets;
  const metas = Object.entries(meta)
    .map(([name, content]) => `<meta name="${escapeHtml(name)}" content="${escapeHtml(content)}">`)
    .join("\n");
  return `<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
${metas}
<link rel="icon" type="image/svg+xml" href="${dashboard.get("favicon.svg").url}">
<link rel="stylesheet" href="${dashboard.get("dashboard.css").url}">`;
}

export interface LoginPageOptions {
  /** Shown above the form, e.g. why the last attempt failed. */
  error?: string;
  /** Where to go after signing in (a /dashboard path). */
  next: string;
  /** The sign-in form's CSRF token (also in its cookie). */
  formToken: string;
  /** Shown below the form when the dashboard is read-only. */
  readOnly: boolean;
}

export function loginPage(assets: UiAssets, options: LoginPageOptions): string {
  const error = options.error ? `<p class="login-error" role="alert">${escapeHtml(options.error)}</p>` : "";
  const readOnly = options.readOnly ? `<p class="login-note">This dashboard is read-only: it shows the queue and changes nothing.</p>` : "";
  return `<!doctype html>
<html lang="en">
<head>
${head(assets, "Sign in · agentq")}
</head>
<body class="login-body">
<main class="login-card">
<h1 class="brand">agentq</h1>
<p class="login-lead">Sign in with an API key to see the task queue, workers and agents.</p>
${error}
<form method="post" action="/dashboard/login" class="login-form">
<input type="hidden" name="_csrf" value="${escapeHtml(options.formToken)}">
<input type="hidden" name="next" value="${escapeHtml(options.next)}">
<label for="api_key">API key</label>
<input id="api_key" name="api_key" type="password" autocomplete="current-password" required autofocus spellcheck="false" maxlength="256">
<button type="submit" class="button primary">Sign in</button>
</form>
<p class="login-note">Create a key with <code>bun run keys create &lt;name&gt;</code>. The key is checked when you sign in and never stored; the browser keeps only a session cookie.</p>
${readOnly}
</main>
</body>
</html>
`;
}

export interface ShellOptions {
  csrfToken: string;
  readOnly: boolean;
  sessionExpiresAt: string;
}

export function dashboardShell(assets: UiAssets, options: ShellOptions): string {
  return `<!doctype html>
<html lang="en">
<head>
${head(assets, "agentq dashboard", {
  "agentq-csrf-token": options.csrfToken,
  "agentq-read-only": String(options.readOnly),
  "agentq-session-expires-at": options.sessionExpiresAt,
})}
<script type="module" src="${assets.dashboard.get("dashboard.js").url}"></script>
</head>
<body>
<div id="app"></div>
</body>
</html>
`;
}
