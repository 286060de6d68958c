/**
 * Scheduled refreshes with real supervisor processes: each slot of an every_seconds=1 schedule
 * makes one task however many supervisors run it, through a kill -9 and a restart; and a
 * supervisor killed in the middle of a scheduling step (its compare-and-set done, its insert
 * not) leaves nothing behind, the slot being fired once by the next supervisor.
 */
import { expect, test } from "bun:test";
import postgres from "postgres";
import { sql } from "drizzle-orm";
import type { TestContext } from "../helpers/app.ts";
import { eventually, spawnSupervisor, waitForStatus } from "../helpers/engine.ts";
import { TEST_SERVER_URL } from "../helpers/db.ts";
import { newTaskId } from "../../src/core/tasks.ts";
import { toIso } from "../../src/db/values.ts";
import { createCorpus, e2eSuite, exitWithin, waitAllTerminal, waitForBackendsGone } from "./support.ts";

let ctx: TestContext;
const children = e2eSuite((c) => (ctx = c));
const FAST_SCHEDULER = { AGENTQ_SCHEDULE_EVERY_MS: "50" };
/** What openRuntime names the main-thread pool of test/fixtures/supervisor-process.ts. */
const SUPERVISOR_APP = "agentq-test-supervisor";

const ms = (text: string) => Date.parse(toIso(text));

interface FiredLine {
  schedule_id: string;
  slot: string;
  next_run_at: string | null;
  task_id: string | null;
  created: boolean;
}

/** Collects the `schedule_fired` log lines of supervisor processes (JSON lines on their stdout). */
function firedLog() {
  const fired: FiredLine[] = [];
  const reader = () => {
    let partial = "";
    return (text: string) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith("{")) continue;
        const entry = JSON.parse(line) as FiredLine & { event?: string };
        if (entry.event === "schedule_fired") fired.push(entry);
      }
    };
  };
  return { fired, reader };
}

async function scheduledTasks(scheduleId: string) {
  return ctx.database.db.execute<{ task_id: string; status: string; created_at: string }>(
    sql`select task_id, status, created_at::text from background_tasks where schedule_id = ${scheduleId} order by created_at`,
  );
}

async function scheduleRow(scheduleId: string) {
  const [row] = await ctx.database.db.execute<{ slot: string | null; last_run_at: string | null }>(
    sql`select next_run_at::text as slot, last_run_at from agent_schedules where schedule_id = ${scheduleId}`,
  );
  return row!;
}

test("three supervisors on an every_seconds=1 schedule, one killed with SIGKILL and replaced: each slot fires once, never two tasks for a slot", async () => {
  const corpus = await createCorpus(ctx);
  const agentId = await corpus.agent();
  const log = firedLog();
  const spawn = () =>
    spawnSupervisor(ctx, { workers: 1, env: { ...FAST_SCHEDULER, LOG_LEVEL: "info" }, onStdout: log.reader() }).then((p) => children.track(p));
  const supervisors = await Promise.all([spawn(), spawn(), spawn()]);

  const schedule = (await ctx.request("PUT", `agents/${agentId}/schedule`, { body: { every_seconds: 1 } })).body;
  const anchor = Date.parse(schedule.next_run_at);
  const count = async (n: number) => ((await scheduledTasks(schedule.schedule_id)).length >= n ? true : undefined);
  await eventually(() => count(3), 15_000, "three scheduled tasks");
  const victim = supervisors[0]!;
  victim.proc.kill("SIGKILL");
  await exitWithin(victim, 5_000);
  await spawn();
  const afterRestart = (await scheduledTasks(schedule.schedule_id)).length;
  await eventually(() => count(afterRestart + 3), 15_000, "three more scheduled tasks after the restart");
  // No slot after this one: the DELETE waits for a scheduler holding the row, then nothing fires.
  expect((await ctx.request("DELETE", `agents/${agentId}/schedule`)).status).toBe(204);

  const tasks = await scheduledTasks(schedule.schedule_id);
  // What the supervisors say they fired (each logs a slot after its commit): every slot once, by
  // one of them, none skipped: each fire's next slot is the slot the following fire fired.
  const fired = log.fired.filter((f) => f.schedule_id === schedule.schedule_id);
  const slots = fired.map((f) => f.slot);
  expect(new Set(slots).size).toBe(slots.length);
  const ordered = [...fired].sort((a, b) => Date.parse(a.slot) - Date.parse(b.slot));
  expect(Date.parse(ordered[0]!.slot)).toBe(anchor);
  // Every task of the schedule is one a logged fire created, except (at most) one whose
  // supervisor was killed between its commit and its log line; only such a fire may be missing
  // from the chain.
  const createdBy = new Set(fired.filter((f) => f.created).map((f) => f.task_id));
  const unlogged = tasks.filter((t) => !createdBy.has(t.task_id)).length;
  expect(unlogged).toBeLessThanOrEqual(1);
  let breaks = 0;
  for (let i = 1; i < ordered.length; i++) if (ordered[i]!.slot !== ordered[i - 1]!.next_run_at) breaks++;
  expect(breaks).toBeLessThanOrEqual(unlogged);
  // A task belongs to the one-second slot it was created in (its created_at is the now() its
  // next slot was computed from, so two fires of one slot would share an index, and two
  // different slots cannot).
  const perSlot = new Map<number, number>();
  for (const t of tasks) {
    const index = Math.floor((ms(t.created_at) - anchor) / 1000);
    perSlot.set(index, (perSlot.get(index) ?? 0) + 1);
  }
  const doubled = [...perSlot].filter(([, n]) => n > 1);
  expect(doubled).toEqual([]);
  const indices = [...perSlot.keys()];
  expect(Math.min(...indices)).toBe(0);
  // Slots are missed only when one finds the previous slot's task still pending (it joins it,
  // which can happen around the kill, while the dead supervisor's popped id waits for the
  // reconciler): at most a couple of them.
  expect(Math.max(...indices) + 1 - tasks.length).toBeLessThanOrEqual(2);
  const final = await waitAllTerminal(ctx, tasks.map((t) => t.task_id), 30_000);
  expect(tasks.map((t) => final.get(t.task_id)!.status).every((s) => s === "completed")).toBe(true);
  await children.killAll();
  await waitForBackendsGone(ctx, SUPERVISOR_APP);
}, 90_000);

test("kill -9 of a supervisor in the middle of a scheduling step: nothing written, the next supervisor fires the slot once", async () => {
  const corpus = await createCorpus(ctx);
  const agentId = await corpus.agent();
  const schedule = (await ctx.request("PUT", `agents/${agentId}/schedule`, { body: { every_seconds: 3600 } })).body;

  // A refresh of the agent written by a transaction that does not end yet: the scheduler's insert
  // of the slot's task must wait for it (the one-pending-refresh-per-agent index), after the same
  // statement has advanced next_run_at. The scheduler is then stopped mid-step, for as long as we like.
  const blocker = postgres(ctx.testDb.url, { max: 1, onnotice: () => {} });
  const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
  const reserved = await blocker.reserve();
  try {
    await reserved`begin`;
    await reserved`insert into background_tasks (task_id, agent_id, dedupe) values (${newTaskId()}, ${agentId}, true)`;
    await ctx.database.db.execute(sql`update agent_schedules set next_run_at = now() where schedule_id = ${schedule.schedule_id}`);
    const slot = (await scheduleRow(schedule.schedule_id)).slot!;

    const first = children.track(await spawnSupervisor(ctx, { workers: 1, env: FAST_SCHEDULER }));
    const stuck = await eventually(
      async () => {
        const rows = await admin<{ pid: number }[]>`
          select pid from pg_stat_activity
          where datname = ${ctx.testDb.name} and application_name = ${SUPERVISOR_APP}
            and wait_event_type = 'Lock' and query like '%update agent_schedules%'`;
        return rows[0];
      },
      15_000,
      "the scheduler to wait inside its step",
    );
    // Its compare-and-set ran, uncommitted: from outside, the slot is still the old one.
    expect((await scheduleRow(schedule.schedule_id)).slot).toBe(slot);

    first.proc.kill("SIGKILL");
    await exitWithin(first, 5_000);
    // Let the dead supervisor's statement go on, then fail for want of a client: PostgreSQL rolls it back.
    await reserved`rollback`;
    await waitForBackendsGone(ctx, SUPERVISOR_APP);
    const [gone] = await admin<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where pid = ${stuck.pid}`;
    expect(gone!.n).toBe(0);
    expect(await scheduledTasks(schedule.schedule_id)).toHaveLength(0);
    expect(await scheduleRow(schedule.schedule_id)).toEqual({ slot, last_run_at: null });

    // Restarted: the slot is still due, and fires once.
    children.track(await spawnSupervisor(ctx, { workers: 1, env: FAST_SCHEDULER }));
    const [task] = await eventually(async () => {
      const rows = await scheduledTasks(schedule.schedule_id);
      return rows.length > 0 ? rows : undefined;
    }, 15_000, "the slot to fire");
    await waitForStatus(ctx, task!.task_id, ["completed"]);
    const after = await scheduleRow(schedule.schedule_id);
    expect(ms(after.slot!)).toBe(ms(slot) + 3600_000);
    expect(after.last_run_at).not.toBeNull();
    expect(await scheduledTasks(schedule.schedule_id)).toHaveLength(1);
    expect(ms(task!.created_at)).toBeGreaterThanOrEqual(ms(slot));
  } finally {
    reserved.release();
    await blocker.end({ timeout: 5 });
    await admin.end({ timeout: 5 });
  }
}, 60_000);
