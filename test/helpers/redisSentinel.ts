/**
 * A real Redis Sentinel deployment for tests, from Debian's `redis-server` and `redis-sentinel`
 * on spare loopback ports, in a temp dir of its own: a primary, a replica (`--replicaof`) and
 * three sentinels (quorum 2), each sentinel with its own sentinel.conf (a sentinel rewrites
 * its file). Failure detection is fast (down after 1 s, failover timeout 3 s) so a test sees
 * a failover in seconds. It is private to the test file that starts it; the shared Redis on
 * 6379 is never touched.
 *
 * `redisSentinelSuite()` registers the hooks: started in beforeAll, every process SIGKILLed and
 * the dir removed in afterAll, whatever the tests did.
 */
import { afterAll, beforeAll } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { eventually } from "./engine.ts";
import { freePort } from "./metrics.ts";

export interface Node {
  host: string;
  port: number;
}

export interface SentinelOptions {
  /** The monitored primary's name (default "agentq-test"). */
  name?: string;
  /** requirepass of the primary and the replica (and the replica's masterauth). */
  password?: string;
  /** requirepass of the sentinels (and what they use among themselves). */
  sentinelPassword?: string;
}

export interface RedisSentinel {
  name: string;
  primary: Node;
  replica: Node;
  sentinels: Node[];
  /** `host:port,...`: the value of AGENTQ_REDIS_SENTINELS. */
  sentinelList: string;
  /** A REDIS_URL for this deployment: its credentials count, its host and port are never used. */
  redisUrl: string;
  /** Runs redis-cli against a server or a sentinel (with its password); returns its stdout (throws on a non-zero exit). */
  cli(node: Node, ...args: string[]): Promise<string>;
  /** The primary the sentinels announce now. */
  announcedPrimary(): Promise<Node>;
  /** SIGKILLs the first primary; resolves once it is gone. */
  killPrimary(): Promise<void>;
  stop(): Promise<void>;
}

const LOCALHOST = "127.0.0.1";

export async function startRedisSentinel(options: SentinelOptions = {}): Promise<RedisSentinel> {
  const name = options.name ?? "agentq-test";
  const dir = mkdtempSync(join(tmpdir(), "agentq-redis-sentinel-"));
  const procs = new Map<number, Subprocess>();
  const primary = { host: LOCALHOST, port: freePort() };
  const replica = { host: LOCALHOST, port: freePort() };
  const sentinels = [0, 1, 2].map(() => ({ host: LOCALHOST, port: freePort() }));
  const isSentinel = (node: Node) => sentinels.some((s) => s.port === node.port);

  async function cli(node: Node, ...args: string[]): Promise<string> {
    const password = isSentinel(node) ? options.sentinelPassword : options.password;
    const auth = password ? ["--no-auth-warning", "-a", password] : [];
    const proc = Bun.spawn(["redis-cli", "-h", node.host, "-p", String(node.port), ...auth, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`redis-cli -p ${node.port} ${args.join(" ")} exited ${code}: ${err || out}`);
    return out;
  }

  function spawn(node: Node, command: string[]) {
    procs.set(node.port, Bun.spawn(command, { stdin: "ignore", stdout: "ignore", stderr: "inherit" }));
  }

  function startServer(node: Node, extra: string[]) {
    const data = join(dir, `redis-${node.port}`);
    mkdirSync(data);
    const auth = options.password ? ["--requirepass", options.password, "--masterauth", options.password] : [];
    spawn(node, [
      "redis-server",
      "--port", String(node.port),
      "--bind", node.host,
      "--dir", data,
      "--save", "",
      "--appendonly", "no",
      "--logfile", join(data, "redis.log"),
      ...auth,
      ...extra,
    ]);
  }

  function startSentinel(node: Node) {
    const file = join(dir, `sentinel-${node.port}.conf`);
    const lines = [
      `port ${node.port}`,
      `bind ${node.host}`,
      `dir ${dir}`,
      `logfile ${join(dir, `sentinel-${node.port}.log`)}`,
      `sentinel monitor ${name} ${primary.host} ${primary.port} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 3000`,
      `sentinel parallel-syncs ${name} 1`,
      ...(options.password ? [`sentinel auth-pass ${name} ${options.password}`] : []),
      ...(options.sentinelPassword ? [`requirepass ${options.sentinelPassword}`, `sentinel sentinel-pass ${options.sentinelPassword}`] : []),
    ];
    writeFileSync(file, `${lines.join("\n")}\n`);
    spawn(node, ["redis-sentinel", file]);
  }

  async function stop() {
    const live = [...procs.values()];
    for (const p of live) p.kill("SIGKILL");
    await Promise.all(live.map((p) => p.exited));
    procs.clear();
    rmSync(dir, { recursive: true, force: true });
  }

  /** `SENTINEL MASTER <name>` as a field map. */
  async function masterState(sentinel: Node): Promise<Map<string, string>> {
    const lines = (await cli(sentinel, "sentinel", "master", name)).trim().split("\n");
    const fields = new Map<string, string>();
    for (let i = 0; i + 1 < lines.length; i += 2) fields.set(lines[i]!, lines[i + 1]!);
    return fields;
  }

  try {
    startServer(primary, []);
    startServer(replica, ["--replicaof", primary.host, String(primary.port)]);
    for (const node of [primary, replica])
      await eventually(async () => ((await cli(node, "ping").catch(() => "")).trim() === "PONG" ? true : undefined), 10_000, `redis-server on ${node.port}`);
    await eventually(
      async () => ((await cli(replica, "info", "replication")).includes("master_link_status:up") ? true : undefined),
      15_000,
      "the replica in sync with the primary",
    );
    for (const node of sentinels) startSentinel(node);
    // A failover needs a quorum of sentinels that know each other and the replica (hello messages every 2 s).
    for (const node of sentinels)
      await eventually(
        async () => {
          const state = await masterState(node).catch(() => undefined);
          return state?.get("num-other-sentinels") === "2" && state.get("num-slaves") === "1" ? true : undefined;
        },
        20_000,
        `sentinel ${node.port} to know the replica and the other sentinels`,
      );
  } catch (error) {
    await stop();
    throw error;
  }

  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : "";
  return {
    name,
    primary,
    replica,
    sentinels,
    sentinelList: sentinels.map((s) => `${s.host}:${s.port}`).join(","),
    // Port 1: nothing listens there, so a client that used REDIS_URL's address instead of the sentinels' answer would fail.
    redisUrl: `redis://${auth}${LOCALHOST}:1/0`,
    cli,
    async announcedPrimary() {
      const [host, port] = (await cli(sentinels[0]!, "sentinel", "get-master-addr-by-name", name)).trim().split("\n");
      return { host: host!, port: Number(port) };
    },
    async killPrimary() {
      const proc = procs.get(primary.port);
      if (!proc) return;
      proc.kill("SIGKILL");
      await proc.exited;
      procs.delete(primary.port);
    },
    stop,
  };
}

/** Starts a deployment in beforeAll and always stops it in afterAll; the getter returns it inside tests. */
export function redisSentinelSuite(options: SentinelOptions = {}): () => RedisSentinel {
  let deployment: RedisSentinel | undefined;
  beforeAll(async () => {
    deployment = await startRedisSentinel(options);
  }, 60_000);
  afterAll(async () => {
    await deployment?.stop();
  });
  return () => {
    if (!deployment) throw new Error("the Redis Sentinel deployment is not started (redisSentinelSuite's beforeAll did not run or failed)");
    return deployment;
  };
}
