/**
 * Invariant 4 (no task lost when a supervisor process dies) and 3 (exactly one
 * terminal status, exactly-once effects): two supervisor processes share the
 * database and the Redis prefix; one is killed with SIGKILL mid-run.
 */
import { test } from "bun:test";
import type { TestContext } from "../helpers/app.ts";
import { e2eSuite } from "./support.ts";
import { supervisorKillScenario } from "./scenarios.ts";

let ctx: TestContext;
const children = e2eSuite((c) => (ctx = c));

test("kill -9 of one of two supervisor processes: every task still completes exactly once, the dead one's tasks are retried", async () => {
  await supervisorKillScenario(ctx, children);
}, 60_000);
