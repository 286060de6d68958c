/**
 * The dashboard's client: one bundle (Bun.build, served from our origin) that draws the page
 * the path names, from the /api/v1 routes, with the session cookie. See README "Dashboard".
 */
import { render } from "preact";
import "./dashboard.css";
import { csrfToken, readOnly } from "./api.ts";
import { Link, useLocation } from "./router.tsx";
import { Overview } from "./pages/overview.tsx";
import { TasksPage } from "./pages/tasks.tsx";
import { TaskPage } from "./pages/task.tsx";
import { AgentsPage } from "./pages/agents.tsx";
import { AgentPage } from "./pages/agent.tsx";

function route(path: string) {
  const parts = path.replace(/\/+$/, "").split("/").slice(2).map(decodeURIComponent);
  if (parts.length === 0) return { section: "overview", page: <Overview /> };
  if (parts[0] === "tasks" && parts.length === 1) return { section: "tasks", page: <TasksPage /> };
  if (parts[0] === "tasks" && parts.length === 2) return { section: "tasks", page: <TaskPage key={parts[1]} taskId={parts[1]!} /> };
  if (parts[0] === "agents" && parts.length === 1) return { section: "agents", page: <AgentsPage /> };
  if (parts[0] === "agents" && parts.length === 2) return { section: "agents", page: <AgentPage key={parts[1]} agentId={parts[1]!} /> };
  return { section: "", page: <p class="empty">No such page.</p> };
}

const SECTIONS = [
  { id: "overview", href: "/dashboard", label: "Overview" },
  { id: "tasks", href: "/dashboard/tasks", label: "Tasks" },
  { id: "agents", href: "/dashboard/agents", label: "Agents" },
];

function App() {
  const { path } = useLocation();
  const { section, page } = route(path);
  return (
    <>
      <header class="topbar">
        <Link href="/dashboard" class="brand">
          agentq
        </Link>
        <nav class="nav">
          {SECTIONS.map((s) => (
            <Link key={s.id} href={s.href} class={section === s.id ? "active" : ""} aria-current={section === s.id ? "page" : undefined}>
              {s.label}
            </Link>
          ))}
        </nav>
        <div class="topbar-end">
          {readOnly && (
            <span class="badge read-only" title="AGENTQ_DASHBOARD_READ_ONLY: no action is offered, and the server refuses them">
              read-only
            </span>
          )}
          <a href="/swagger">API docs</a>
          <form method="post" action="/dashboard/logout" class="signout">
            <input type="hidden" name="_csrf" value={csrfToken} />
            <button type="submit" class="button link">
              Sign out
            </button>
          </form>
        </div>
      </header>
      <main class="main">{page}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
