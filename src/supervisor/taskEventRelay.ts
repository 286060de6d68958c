/**
 * What a supervisor tells live-event subscribers (src/queue/taskEvents.ts): a listener on its
 * events (Supervisor.on) that turns each task start, progress and ending into a task event and
 * queues it on the process's publisher. Costs one Map operation and one array push per event;
 * the publisher sends the events of a tick in one message.
 */
import type { TaskEventData, TaskEventPublisher } from "../queue/taskEvents.ts";
import type { SupervisorEvent } from "./supervisor.ts";

export function relayTaskEvents(publisher: TaskEventPublisher): (event: SupervisorEvent) => void {
  // Last progress of each running task, for the percent of its ending (PostgreSQL keeps it on failure).
  const percents = new Map<string, number>();
  return (event) => {
    const at = new Date().toISOString();
    let data: TaskEventData | null = null;
    switch (event.type) {
      case "task_started":
        percents.set(event.taskId, 0);
        data = { type: "status", task_id: event.taskId, agent_id: event.agentId, status: "running", percent: 0, attempt: event.attempt, at };
        break;
      case "task_progress": {
        if (event.agentId === undefined || event.attempt === undefined) return;
        const percent = Math.max(0, Math.min(100, Math.round(event.percent)));
        percents.set(event.taskId, percent);
        data = { type: "progress", task_id: event.taskId, agent_id: event.agentId, status: "running", percent, attempt: event.attempt, at };
        break;
      }
      case "task_finished": {
        const last = percents.get(event.taskId) ?? null;
        percents.delete(event.taskId);
        if (event.status === null || event.agentId === undefined || event.attempt === undefined) return;
        // As the settle writes it: 100 when completed, 0 back in the queue, the last progress otherwise.
        const percent = event.status === "completed" ? 100 : event.status === "pending" ? 0 : last;
        data = { type: "status", task_id: event.taskId, agent_id: event.agentId, status: event.status, percent, attempt: event.attempt, at };
        break;
      }
      default:
        return;
    }
    publisher.publish(data);
  };
}
