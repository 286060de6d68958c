/**
 * The worker actor (workers/actor.ts) in the test process, with its real
 * dependencies (workers/actorDeps.ts: its own Redis connections and PostgreSQL
 * pool) and a port that records what it tells the supervisor. No supervisor
 * runs: the test plays its part (cancels, drain).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createTestContext, type TestContext } from "../helpers/app.ts";
import { FAST_ENGINE, eventually } from "../helpers/engine.ts";
import { postAgent, postTaxonomy, uuid } from "../helpers/fixtures.ts";
import { Actor, type ActorDeps } from "../../workers/actor.ts";
import { openActorDeps, type OpenActorDeps } from "../../workers/actorDeps.ts";
import type { TaskHandler } from "../../workers/handlers/types.ts";
import type { WorkerMessage, WorkerSettings } from "../../src/protocol/messages.ts";
import { requestCancel } from "../../src/db/tasks/cancel.ts";
import { queueKeys } from "../../src/queue/keys.ts";
import { actorSettings, gatedHandler } from "../helpers/actors.ts";
import { pgSleep } from "../fixtures/workers/behaviours.ts";

let ctx: TestContext;
let root: string;
beforeAll(async () => {
  ctx = await createTestContext(FAST_ENGINE);
  root = uuid();
  await postTaxonomy(ctx, "1", [{ node_id: root, label: "r" }]);
});
afterAll(() => ctx.close());

const db = () => ctx.database.db;

async function enqueue(n: number, priority = "medium"): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const agent = (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id;
    const res = await ctx.request("POST", `agents/${agent}/coverage/refresh`, { body: { priority } });
    expect(res.status).toBe(202);
    ids.push(res.body.task_id);
  }
  return ids;
}

const queued = async () => {
  let n = 0;
  for (const key of queueKeys(ctx.config.redisPrefix).queues) n += await ctx.redis.zcard(key);
  return n;
};

const row = async (taskId: string) =>
  (await db().execute<{ status: string; attempt: number; result: unknown }>(sql`select status, attempt, result from background_tasks where task_id = ${taskId}`))[0]!;

const historyRows = async (ids: string[]) =>
  (await db().execute<{ n: number }>(sql`select count(*)::int as n from coverage_history where task_id = any(${`{${ids.join(",")}}`}::text[])`))[0]!.n;

/** A handler that waits until the test opens its gate, then returns a canned result; it honours abort. */
const gated = () => gatedHandler({ overall_coverage: 50, total_documents: 1, total_chunks: 2 });

interface Harness {
  actor: Actor;
  deps: OpenActorDeps;
  messages: WorkerMessage[];
  claims: string[][];
  /** Resolves with the first message (past or future) matching. */
  next(predicate: (m: WorkerMessage) => boolean, timeoutMs?: number): Promise<WorkerMessage>;
  stop(): Promise<void>;
}

function startActor(
  handler: TaskHandler,
  concurrency: number,
  onMessage?: (m: WorkerMessage, actor: Actor) => void,
  override: (deps: OpenActorDeps) => Partial<ActorDeps> = () => ({}),
  settingsOverride: Partial<WorkerSettings> = {},
): Harness {
  const settings = { ...actorSettings(ctx.config, concurrency), ...settingsOverride };
  const workerId = `test-actor-${uuid().slice(0, 8)}`;
  const deps = openActorDeps(workerId, settings);
  const claims: string[][] = [];
  const messages: WorkerMessage[] = [];
  const waiters = new Set<{ predicate: (m: WorkerMessage) => boolean; resolve: (m: WorkerMessage) => void }>();
  let actor!: Actor;
  const port = {
    send(m: WorkerMessage) {
      messages.push(m);
      onMessage?.(m, actor);
      for (const w of [...waiters])
        if (w.predicate(m)) {
          waiters.delete(w);
          w.resolve(m);
        }
    },
  };
  actor = new Actor(workerId, settings, handler, port, {
    ...deps,
    claim: (ids) => {
      claims.push(ids);
      return deps.claim(ids);
    },
    ...override(deps),
  });
  const running = actor.run();
  return {
    actor,
    deps,
    messages,
    claims,
    next(predicate, timeoutMs = 10_000) {
      const past = messages.find(predicate);
      if (past) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching actor message within ${timeoutMs} ms; got ${JSON.stringify(messages.filter((m) => m.type !== "progress"))}`)),
          timeoutMs,
        );
        waiters.add({ predicate, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      });
    },
    async stop() {
      actor.handle({ type: "drain" });
      await running;
      await deps.close();
    },
  };
}

const isFor = (type: WorkerMessage["type"], taskId: string) => (m: WorkerMessage) => m.type === type && "taskId" in m && m.taskId === taskId;

test("an actor never takes more ids than it has free slots, claims them in one statement, and writes endings ready together in one", async () => {
  const ids = await enqueue(10);
  const gate = gated();
  const h = startActor(gate.handler, 4);
  try {
    const first = ids.slice(0, 4);
    for (const id of first) await h.next(isFor("started", id));
    // One priority-ordered take of exactly the free slots, one claim for the four.
    expect(h.claims[0]).toEqual(first);
    expect(h.actor.runningTasks().sort()).toEqual([...first].sort());
    expect(await queued()).toBe(6);

    gate.open(first);
    for (const id of first) await h.next(isFor("completed", id));
    // Durable before acknowledged: each row is completed (with its history row) once its message is out.
    for (const id of first) expect((await row(id)).status).toBe("completed");
    expect(await historyRows(first)).toBe(4);
    // The four endings were ready at the same moment: one settle statement wrote them.
    expect(h.deps.settleStats()).toEqual({ writes: 1, items: 4 });

    gate.open(ids);
    for (const id of ids) await h.next(isFor("completed", id));
    expect(Math.max(...h.claims.map((c) => c.length))).toBeLessThanOrEqual(4);
    expect(h.claims.flat().sort()).toEqual([...ids].sort());
    expect(await queued()).toBe(0);
  } finally {
    await h.stop();
  }
});

test("a batch whose rows lost their leases: those rows are skipped and nothing of them is written; the others commit", async () => {
  const [kept, takenOver, cancelled] = await enqueue(3);
  const gate = gated();
  const h = startActor(gate.handler, 3);
  try {
    for (const id of [kept!, takenOver!, cancelled!]) await h.next(isFor("started", id));
    // Another owner took one over (its lease token changed); the API cancelled another, and the actor was not told.
    await db().execute(sql`update background_tasks set lease_token = gen_random_uuid() where task_id = ${takenOver!}`);
    await requestCancel(db(), cancelled!);
    gate.open([kept!, takenOver!, cancelled!]);
    await h.next(isFor("completed", kept!));
    expect(await h.next(isFor("released", takenOver!))).toMatchObject({ status: "unchanged", reason: "lease_lost" });
    expect(await h.next(isFor("released", cancelled!))).toMatchObject({ status: "unchanged", reason: "lease_lost" });
    expect(h.deps.settleStats()).toEqual({ writes: 1, items: 3 });
    expect((await row(takenOver!)).status).toBe("running");
    expect(await row(cancelled!)).toMatchObject({ status: "cancelled", result: null });
    expect(await historyRows([takenOver!, cancelled!])).toBe(0);
    expect(await historyRows([kept!])).toBe(1);
  } finally {
    await h.stop();
  }
});

test("a cancel landing between claim and run: the handler never does any work, nothing is written, the slot is free again", async () => {
  const [victim, other] = await enqueue(2);
  const gate = gated();
  let worked = 0;
  const handler: TaskHandler = (c) => {
    worked++;
    return gate.handler(c);
  };
  // The supervisor relays the API's cancel the moment it hears the task was claimed.
  const h = startActor(handler, 1, (m, actor) => {
    if (m.type === "started" && m.taskId === victim) {
      void requestCancel(db(), victim);
      actor.handle({ type: "cancel", taskId: victim, reason: "cancelled" });
    }
  });
  try {
    await h.next(isFor("cancelled", victim!));
    gate.open([other!]);
    await h.next(isFor("completed", other!));
    expect(await eventually(async () => ((await row(victim!)).status === "cancelled" ? true : undefined))).toBe(true);
    expect(await historyRows([victim!])).toBe(0);
    expect(worked).toBe(2); // called, but aborted before it could wait on anything
    expect(h.deps.settleStats().items).toBe(1);
  } finally {
    await h.stop();
  }
});

test("a cancel reaches inside PostgreSQL: the statement is cancelled at once, the backend stops running it, the slot is free again", async () => {
  const [blocked, next] = await enqueue(2);
  const gate = gated();
  const handler: TaskHandler = (c) => (c.taskId === blocked ? pgSleep(c) : gate.handler(c));
  const h = startActor(handler, 1);
  const sleeping = async () =>
    (
      await db().execute<{ n: number }>(sql`
      select count(*)::int as n from pg_stat_activity where state = 'active' and query like 'select pg_sleep(30)%'
      and datname = current_database()
        and application_name like 'agentq-worker-test-actor%'`)
    )[0]!.n;
  try {
    await h.next(isFor("started", blocked!));
    await eventually(async () => ((await sleeping()) === 1 ? true : undefined), 5_000, "the statement to run");
    const sent = performance.now();
    await requestCancel(db(), blocked!);
    h.actor.handle({ type: "cancel", taskId: blocked!, reason: "cancelled" });
    await h.next(isFor("cancelled", blocked!));
    const stoppedMs = performance.now() - sent;
    await eventually(async () => ((await sleeping()) === 0 ? true : undefined), 1_000, "the backend to stop the statement");
    const goneMs = performance.now() - sent;
    expect(stoppedMs).toBeLessThan(1_000);
    expect(goneMs).toBeLessThan(1_000);
    gate.open([next!]);
    await h.next(isFor("completed", next!));
    console.log(`cancel inside PostgreSQL: actor stopped after ${stoppedMs.toFixed(1)} ms, backend idle after ${goneMs.toFixed(1)} ms`);
  } finally {
    await h.stop();
  }
});

test("timeouts and failures end as the settle module says: timeout written by the actor, a throw is failed, a shutdown is handed back refunded", async () => {
  const [slow, throwing, shut] = await enqueue(3);
  const handler: TaskHandler = async (c) => {
    if (c.taskId === throwing) throw new Error("handler broke");
    return gated().handler(c); // never opened: only a stop ends it
  };
  const h = startActor(handler, 3);
  try {
    expect(await h.next(isFor("failed", throwing!), 3_000)).toMatchObject({ error: "handler broke" });
    await h.next(isFor("started", slow!));
    await h.next(isFor("started", shut!));
    // As on SIGTERM: the actor stops taking tasks, then what still runs is stopped.
    h.actor.handle({ type: "drain" });
    h.actor.handle({ type: "cancel", taskId: slow!, reason: "timeout" });
    h.actor.handle({ type: "cancel", taskId: shut!, reason: "shutdown" });
    await h.next(isFor("timed_out", slow!));
    expect(await h.next(isFor("released", shut!))).toMatchObject({ status: "pending", reason: "shutdown" });
    expect(await row(slow!)).toMatchObject({ status: "timeout" });
    expect(await row(throwing!)).toMatchObject({ status: "failed" });
    expect(await row(shut!)).toMatchObject({ status: "pending", attempt: 0 });
    // Handed back means queued again, at its place.
    expect(await ctx.redis.zscore(queueKeys(ctx.config.redisPrefix).queue("medium"), shut!)).not.toBeNull();
  } finally {
    await ctx.redis.del(...queueKeys(ctx.config.redisPrefix).queues);
    await h.stop();
  }
});

test("a drain wakes an idle actor's blocking pop at once and it reports drained", async () => {
  const h = startActor(gated().handler, 2);
  await h.next((m) => m.type === "ready");
  const asked = performance.now();
  await h.stop();
  expect(h.messages.at(-1)).toEqual({ type: "drained" });
  expect(performance.now() - asked).toBeLessThan(1_000);
});

/** Fails the first call of `f` with `error`, then behaves as `f`. */
function failOnce<A extends unknown[], R>(f: (...a: A) => Promise<R>, error: Error): (...a: A) => Promise<R> {
  let failed = false;
  return (...a) => {
    if (failed) return f(...a);
    failed = true;
    return Promise.reject(error);
  };
}

const connectionReset = () => Object.assign(new Error("fixture: connection reset"), { code: "ECONNRESET" });

test("Redis and PostgreSQL failures around a task: a failed pop, claim or settle is retried or left to the reconciler; the actor goes on", async () => {
  const [first, second] = await enqueue(2);
  const gate = gated();
  let lost = 0;
  const h = startActor(gate.handler, 1, undefined, (deps) => ({
    take: failOnce(deps.take, new Error("fixture: redis down")),
    claim: failOnce(deps.claim, connectionReset()),
    settle: failOnce(deps.settle, connectionReset()),
    connectionLost: () => {
      lost++;
      deps.connectionLost();
    },
  }));
  try {
    // The failed claim lost its ids (they left Redis): the reconciler's job; put them back as it would.
    await h.next((m) => m.type === "log" && m.msg.startsWith("claim failed"));
    await h.next((m) => m.type === "log" && m.msg.startsWith("redis pop failed"));
    const d = new (await import("../../src/queue/dispatch.ts")).Dispatcher(ctx.redis, queueKeys(ctx.config.redisPrefix));
    await d.dispatch([first!, second!].map((taskId) => ({ taskId, priority: "medium" as const, score: Date.now() })));
    const startedId = ((await h.next((m) => m.type === "started")) as { taskId: string }).taskId;
    gate.open([first!, second!]);
    // Its settle failed: released, unwritten; the lease lapses and the reconciler retries it.
    expect(await h.next(isFor("released", startedId))).toMatchObject({ status: "unchanged", reason: "bookkeeping_failed" });
    expect((await row(startedId)).status).toBe("running");
    const other = startedId === first ? second! : first!;
    await h.next(isFor("completed", other));
    expect(lost).toBe(2); // the claim's and the settle's lost connections replaced the pool
  } finally {
    await h.stop();
  }
});

test("progress only rises (the supervisor hears each step); a lost connection under the task is a retry, and out of attempts it is failed", async () => {
  const [task] = await enqueue(1);
  await db().execute(sql`update background_tasks set max_attempts = 1 where task_id = ${task!}`);
  const handler: TaskHandler = async (c) => {
    await c.progress(20);
    await c.progress(10); // not higher: ignored
    await Bun.sleep(120);
    await c.progress(60);
    throw connectionReset();
  };
  const h = startActor(handler, 1);
  try {
    expect(await h.next(isFor("released", task!))).toMatchObject({ status: "failed", reason: "connection_lost" });
    expect(h.messages.filter((m) => m.type === "progress").map((m) => (m as { percent: number }).percent)).toEqual([20, 60]);
    const [r] = await db().execute<{ status: string; error: string; progress_percentage: number }>(
      sql`select status, error, progress_percentage from background_tasks where task_id = ${task!}`,
    );
    expect(r).toMatchObject({ status: "failed", error: "gave up after attempts: database connection lost: fixture: connection reset" });
  } finally {
    await h.stop();
  }
});

test("init is ignored once running, and a cancel of a task it does not run changes nothing", async () => {
  const h = startActor(gated().handler, 1);
  await h.next((m) => m.type === "ready");
  h.actor.handle({ type: "init", workerId: "again", settings: {} as WorkerSettings });
  h.actor.handle({ type: "cancel", taskId: "agent-coverage-unknown", reason: "cancelled" });
  expect(h.actor.runningTasks()).toEqual([]);
  await h.stop();
  expect(h.messages.filter((m) => m.type === "ready")).toHaveLength(1);
});

test("a slot is free once its handler returns: the next task is claimed and run while the ending commits, and acknowledged only after its own commit", async () => {
  const [first, second] = await enqueue(2);
  let releaseFirst!: () => void;
  const firstGate = new Promise<void>((r) => (releaseFirst = r));
  const gate = gated();
  gate.open([first!, second!]);
  const h = startActor(gate.handler, 1, undefined, (deps) => ({
    settle: async (taskId, leaseToken, ending) => {
      if (taskId === first) await firstGate; // the first ending's commit is slow
      return deps.settle(taskId, leaseToken, ending);
    },
  }));
  try {
    // One slot, yet the second task starts (and even finishes) while the first still settles.
    await h.next(isFor("started", second!));
    await h.next(isFor("completed", second!));
    expect(h.messages.some(isFor("completed", first!))).toBe(false);
    expect((await row(first!)).status).toBe("running");
    releaseFirst();
    await h.next(isFor("completed", first!));
    expect((await row(first!)).status).toBe("completed");
  } finally {
    await h.stop();
  }
});

test("a claim cooldown: ids that arrive while the actor runs a task wait out the cooldown and are claimed in one statement; an idle actor claims at once; a drain ends the wait", async () => {
  const cooldownMs = 800;
  // Agents first, so that the refreshes below go out back to back.
  const agents = await Promise.all(Array.from({ length: 5 }, async () => (await postAgent(ctx, { taxonomy_node_ids: [root] })).agent_id));
  const refresh = async (agent: string) => {
    const res = await ctx.request("POST", `agents/${agent}/coverage/refresh`, { body: {} });
    expect(res.status).toBe(202);
    return res.body.task_id as string;
  };
  const gate = gated();
  const h = startActor(gate.handler, 8, undefined, () => ({}), { claimCooldownMs: cooldownMs });
  let stopped = false;
  try {
    await h.next((m) => m.type === "ready");
    // Idle: the blocking pop's id is claimed at once, whatever the cooldown.
    const sent = performance.now();
    const first = await refresh(agents[0]!);
    await h.next(isFor("started", first));
    expect(performance.now() - sent).toBeLessThan(cooldownMs);
    const firstClaimAt = performance.now();
    // Busy: three more arrive one by one; none is claimed before the cooldown has passed.
    const later = await Promise.all(agents.slice(1, 4).map(refresh));
    const started = await Promise.all(later.map((id) => h.next(isFor("started", id)).then(() => performance.now())));
    for (const at of started) expect(at - firstClaimAt).toBeGreaterThanOrEqual(cooldownMs - 50);
    expect(h.claims.length).toBe(2);
    expect(h.claims[1]!.sort()).toEqual([...later].sort());
    gate.open([first, ...later]);
    for (const id of [first, ...later]) await h.next(isFor("completed", id));
    // A drain while the actor waits out a cooldown ends the wait at once: once its task is done it
    // reports drained, long before the cooldown would have passed.
    const last = await refresh(agents[4]!);
    await h.next(isFor("started", last));
    const asked = performance.now();
    stopped = true;
    const stopping = h.stop();
    gate.open([last]);
    await stopping;
    expect(h.messages.at(-1)).toEqual({ type: "drained" });
    expect(performance.now() - asked).toBeLessThan(cooldownMs / 2);
  } finally {
    if (!stopped) await h.stop();
  }
});

test("without a cooldown (the default) the same arrivals are claimed as they come", async () => {
  const gate = gated();
  const h = startActor(gate.handler, 8);
  try {
    await h.next((m) => m.type === "ready");
    const [first] = await enqueue(1);
    await h.next(isFor("started", first!));
    const [second] = await enqueue(1);
    await h.next(isFor("started", second!));
    // The second was claimed on its own, while the first still ran.
    expect(h.claims).toEqual([[first!], [second!]]);
    gate.open([first!, second!]);
    for (const id of [first!, second!]) await h.next(isFor("completed", id));
  } finally {
    await h.stop();
  }
});
