/**
 * Live events over Server-Sent Events (hub: ./hub.ts; transport: src/queue/taskEvents.ts).
 *
 *   GET /tasks/{id}/events   the task first (`task`), then its `progress` and `status` events;
 *                            closes after the terminal status
 *   GET /events              every task's events, filtered by agent_id and status (dashboards)
 *
 * Authenticated like every /api/v1 route (src/api/app.ts); browsers' EventSource cannot send
 * headers, which is what the app's request authenticators are for (a session cookie).
 */
import { Elysia, t } from "elysia";
import type { AppDeps } from "../deps.ts";
import { ErrorBody } from "../errors.ts";
import { TaskId } from "../tasks/model.ts";
import { TaskService, type TaskView } from "../../tasks/service.ts";
import { AppError } from "../../core/errors.ts";
import { TASK_STATUSES, type TaskStatus } from "../../core/tasks.ts";
import { LiveEvents, type LiveStream } from "./hub.ts";
import { queueKeys } from "../../queue/keys.ts";
import { TaskEventPublisher, TaskEventSubscriber } from "../../queue/taskEvents.ts";
import { watchedTasks } from "../../db/tasks/watch.ts";

/** Most agents one firehose stream may name. */
export const MAX_STREAM_AGENTS = 100;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const STATUS_LIST = `^(${TASK_STATUSES.join("|")})(,(${TASK_STATUSES.join("|")}))*$`;

export const EventsQuery = t.Object(
  {
    agent_id: t.Optional(
      t.String({
        minLength: 1,
        maxLength: MAX_STREAM_AGENTS * 37,
        description: `Only these agents' tasks: one agent id or up to ${MAX_STREAM_AGENTS}, comma-separated`,
      }),
    ),
    status: t.Optional(
      t.String({
        pattern: STATUS_LIST,
        maxLength: 200,
        description: "Only events whose status is one of these, comma-separated (a progress event's status is running)",
      }),
    ),
  },
  { additionalProperties: false },
);

const encoder = new TextEncoder();

/** The `task` event: the task as GET /tasks/{id} shows it. */
const taskFrame = (task: TaskView) => encoder.encode(`event: task\ndata: ${JSON.stringify(task)}\n\n`);

const EVENT_DOC = [
  "Server-Sent Events (text/event-stream). Each `progress` and `status` event has an `id:` line (Redis-assigned, increasing) and",
  "JSON data {id, type, task_id, agent_id, status, percent, attempt, at}; `percent` may be null (not known to the publisher).",
  "A `: ping` comment comes every AGENTQ_SSE_HEARTBEAT_MS (15 s). A client that lets more than AGENTQ_SSE_CLIENT_BUFFER_BYTES",
  "wait unread is disconnected. Last-Event-ID is not replayed: a reconnecting client starts from the present.",
].join(" ");

/**
 * OpenAPI responses of a stream route, written out: the plugin documents a route's `response`
 * schemas as JSON only, and a stream's 200 is text/event-stream.
 */
function streamResponses(errors: readonly number[]) {
  const error = { description: "The error shape of every non-2xx response", content: { "application/json": { schema: ErrorBody } } };
  return {
    200: { description: "A stream of Server-Sent Events", content: { "text/event-stream": { schema: { type: "string" as const } } } },
    ...Object.fromEntries(errors.map((status) => [status, error])),
  };
}

const sseResponse = (stream: LiveStream) =>
  new Response(stream.body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      // Proxies that buffer responses (nginx) would hold events back.
      "x-accel-buffering": "no",
    },
  });

function parseAgents(raw: string | undefined): Set<string> | undefined {
  if (raw === undefined) return undefined;
  const ids = raw.split(",").map((s) => s.trim().toLowerCase());
  const bad = ids.findIndex((id) => !UUID.test(id));
  if (bad >= 0 || ids.length > MAX_STREAM_AGENTS)
    throw new AppError(
      "validation_error",
      bad >= 0 ? `invalid query: agent_id ${JSON.stringify(ids[bad]!.slice(0, 40))} is not a UUID` : `invalid query: at most ${MAX_STREAM_AGENTS} agent ids`,
      { on: "query", issues: [{ path: "/agent_id", message: bad >= 0 ? "Expected comma-separated UUIDs" : `At most ${MAX_STREAM_AGENTS} agent ids` }] },
    );
  return new Set(ids);
}

async function live(hub: LiveEvents) {
  if (!(await hub.ready())) throw new AppError("dependency_unavailable", "live events are unavailable: Redis is unreachable");
}

export const eventRoutes = (deps: AppDeps & { liveEvents: LiveEvents }) => {
  const tasks = new TaskService(deps);
  const hub = deps.liveEvents;
  return new Elysia({ name: "agentq.events", tags: ["events"] })
    .get(
      "/tasks/:task_id/events",
      async ({ params, request, server }) => {
        // Registered before the task is read, so nothing published meanwhile is missed.
        const stream = hub.open({ taskId: params.task_id }, { setIdleTimeout: (s) => server?.timeout(request, s) });
        try {
          await live(hub);
          const task = await tasks.view(params.task_id);
          stream.begin({ frame: taskFrame(task), state: task });
        } catch (error) {
          stream.abandon();
          throw error;
        }
        return sseResponse(stream);
      },
      {
        params: t.Object({ task_id: TaskId }),
        detail: {
          summary: "Live events of a task (SSE): the task first, then its progress and status changes; closes after its terminal status",
          description: `The first event is \`task\`, the task as GET /tasks/{id} shows it; a terminal task is sent and the stream closes. Then \`progress\` and \`status\` events as they happen, and the stream closes after the terminal status (close your EventSource then: a reconnect gets the terminal task again). A status event without an id comes from re-reading the task (after an interruption of the event bus); \`deleted\` means the task is gone. ${EVENT_DOC}`,
          responses: streamResponses([400, 401, 404, 429, 503]),
        },
      },
    )
    .get(
      "/events",
      async ({ query, request, server }) => {
        const agentIds = parseAgents(query.agent_id);
        const statuses = query.status === undefined ? undefined : new Set(query.status.split(",") as TaskStatus[]);
        const stream = hub.open({ agentIds, statuses }, { setIdleTimeout: (s) => server?.timeout(request, s) });
        try {
          await live(hub);
        } catch (error) {
          stream.abandon();
          throw error;
        }
        stream.begin();
        return sseResponse(stream);
      },
      {
        query: EventsQuery,
        detail: {
          summary: "Live events of every task (SSE), filtered by agent and status: for dashboards",
          description: `Starts with a \`: connected\` comment once the subscription is live, then every matching \`progress\` and \`status\` event; nothing about a task follows its terminal status. A \`resync\` event means events may have been missed (the event bus was interrupted): reload what you show. ${EVENT_DOC}`,
          responses: streamResponses([400, 401, 429, 503]),
        },
      },
    );
};

/**
 * The live-event parts of an app: the publisher of its own events and the SSE hub, each taken
 * from `deps` or made here (the hub then with its own subscription, which `close` ends).
 */
export function liveEventParts(deps: AppDeps): { taskEvents: TaskEventPublisher; liveEvents: LiveEvents; close(): void } {
  const keys = queueKeys(deps.config.redisPrefix);
  const taskEvents = deps.taskEvents ?? new TaskEventPublisher(deps.redis, keys, { logger: deps.logger });
  if (deps.liveEvents) {
    const liveEvents = deps.liveEvents;
    return { taskEvents, liveEvents, close: () => liveEvents.close() };
  }
  const subscriber = new TaskEventSubscriber(deps.redis, keys, deps.logger);
  const liveEvents = new LiveEvents(subscriber, {
    heartbeatMs: deps.config.sseHeartbeatMs,
    clientBufferBytes: deps.config.sseClientBufferBytes,
    maxClients: deps.config.sseMaxClients,
    loadTasks: (ids) => watchedTasks(deps.database.db, ids),
    logger: deps.logger,
    metrics: deps.metrics,
  });
  return {
    taskEvents,
    liveEvents,
    close() {
      liveEvents.close();
      subscriber.close();
    },
  };
}
