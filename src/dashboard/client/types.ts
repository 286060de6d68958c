/** The /api/v1 shapes the pages read (see the OpenAPI document at /swagger/json). */
export type Priority = "high" | "medium" | "low";
export type TaskStatus = "pending" | "running" | "completed" | "failed" | "cancelled" | "timeout";
export const PRIORITIES: readonly Priority[] = ["high", "medium", "low"];
export const STATUSES: readonly TaskStatus[] = ["pending", "running", "completed", "failed", "cancelled", "timeout"];
export const TERMINAL: ReadonlySet<TaskStatus> = new Set(["completed", "failed", "cancelled", "timeout"]);
export const RETRYABLE: ReadonlySet<TaskStatus> = new Set(["failed", "cancelled", "timeout"]);
export const CANCELLABLE: ReadonlySet<TaskStatus> = new Set(["pending", "running"]);

export interface TaskSummary {
  task_id: string;
  agent_id: string;
  task_type: string;
  status: TaskStatus;
  priority: Priority;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  progress_percentage: number;
  error: string | null;
  webhook_url: string | null;
  attempt: number;
  max_attempts: number;
  timeout_ms: number;
  lease_owner: string | null;
  updated_at: string;
  retry_of?: string | null;
  schedule_id?: string | null;
}

/** An attempt that ended without ending its task (it went back to the queue). */
export interface TaskAttempt {
  attempt: number;
  started_at: string | null;
  ended_at: string;
  outcome: string;
  refunded: boolean;
}

export interface Task extends TaskSummary {
  queue_position: number | null;
  estimated_completion_at: string | null;
  result: unknown;
  /** GET /tasks/{id} (and a task's event stream) only: the earlier attempts, oldest first. */
  attempts?: TaskAttempt[];
}

export interface TaskList {
  tasks: TaskSummary[];
  next_cursor: string | null;
}

export interface PriorityCounts {
  high: number;
  medium: number;
  low: number;
  total: number;
}

export interface TaskStats {
  live: { total: number; by_status: { pending: PriorityCounts; running: PriorityCounts } };
  last_hour: {
    since: string;
    window_seconds: number;
    finished: number;
    by_status: { completed: PriorityCounts; failed: PriorityCounts; cancelled: PriorityCounts; timeout: PriorityCounts };
  };
  oldest_pending: { task_id: string; created_at: string; age_seconds: number } | null;
  calculated_at: string;
}

export interface Workers {
  supervisors: { supervisor_id: string; task_slots: number; busy: number; heartbeat_expires_at: string }[];
  task_slots: number;
  busy: number;
  calculated_at: string;
}

export interface Agent {
  agent_id: string;
  name: string;
  taxonomy_node_ids: string[];
  taxonomy_version: string;
  scope_description: string | null;
  level: number;
  total_documents: number;
  total_chunks: number;
  coverage_percent: number;
  last_coverage_update: string | null;
  created_at: string;
  updated_at: string;
}

export interface AgentList {
  agents: Agent[];
  total: number;
}

export interface HistoryEntry {
  timestamp: string;
  overall_coverage: number;
  total_documents: number;
  total_chunks: number;
  version: string;
}

export interface History {
  agent_id: string;
  history: HistoryEntry[];
  total_entries: number;
}

export interface Gap {
  node_id: string;
  current_coverage: number;
  target_coverage: number;
  missing_docs: number;
  recommendation: string;
}

export interface Gaps {
  agent_id: string;
  threshold: number;
  gaps: Gap[];
  detected_at: string;
}

export interface TaxonomyNode {
  node_id: string;
  label: string;
}

export interface Schedule {
  schedule_id: string;
  agent_id: string;
  cron: string | null;
  every_seconds: number | null;
  timezone: string;
  priority: Priority;
  webhook_url: string | null;
  enabled: boolean;
  next_run_at: string | null;
  last_run_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface WebhookDelivery {
  task_id: string;
  webhook_id: string;
  url: string;
  status: "pending" | "delivered" | "dead";
  attempts: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
  attempt_log: { attempt: number; status_code: number | null; error: string | null; duration_ms: number | null; attempted_at: string }[];
}

/** A live task event (SSE): a status change or progress of a running task. */
export interface TaskEvent {
  id?: number;
  type: "progress" | "status";
  task_id: string;
  agent_id: string;
  status: TaskStatus;
  percent: number | null;
  attempt: number;
  at: string;
}
