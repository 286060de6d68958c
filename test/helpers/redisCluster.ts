/**
 * A real Redis Cluster for tests: three primaries (no replicas) from Debian's `redis-server
 * --cluster-enabled yes` on spare loopback ports, in a temp dir of their own, joined by
 * `redis-cli --cluster create`. It is private to the test file that starts it, so tests may
 * FLUSHALL it (the shared Redis on 6379 is never touched).
 *
 * `redisClusterService()` is what a suite starts in beforeAll and stops in afterAll (every
 * process SIGKILLed and the dir removed, whatever the tests did).
 */
import type { Config } from "../../src/config.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Redis from "ioredis";
import { eventually } from "./engine.ts";
import { freePort } from "./metrics.ts";

export interface ClusterNode {
  host: string;
  port: number;
}

export interface RedisCluster {
  nodes: ClusterNode[];
  /** `host:port,host:port,...`: the value of AGENTQ_REDIS_CLUSTER_NODES. */
  nodeList: string;
  /** Runs redis-cli against one node; returns its stdout (throws on a non-zero exit). */
  cli(node: ClusterNode, ...args: string[]): Promise<string>;
  /** FLUSHALL on every primary: what losing the whole cluster's data does. Returns how many keys there were. */
  flushAll(): Promise<number>;
  /** The node that serves `slot` now, as `node` (any live one) sees the cluster. */
  primaryOf(slot: number, node?: ClusterNode): Promise<ClusterNode>;
  /** SIGKILLs one node's redis-server. */
  kill(node: ClusterNode): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterShape {
  primaries?: number;
  /** Replicas per primary (redis-cli --cluster-replicas); 0 by default. */
  replicas?: number;
}

export async function startRedisCluster(options: ClusterShape = {}): Promise<RedisCluster> {
  const primaries = options.primaries ?? 3;
  const replicas = options.replicas ?? 0;
  const total = primaries * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), "agentq-redis-cluster-"));
  const procs: Subprocess[] = [];
  const nodes: ClusterNode[] = [];

  async function cli(node: ClusterNode, ...args: string[]): Promise<string> {
    const proc = Bun.spawn(["redis-cli", "-h", node.host, "-p", String(node.port), ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`redis-cli -p ${node.port} ${args.join(" ")} exited ${code}: ${err || out}`);
    return out;
  }

  async function stop() {
    for (const p of procs) p.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    rmSync(dir, { recursive: true, force: true });
  }

  try {
    for (let i = 0; i < total; i++) {
      // The cluster bus port is set explicitly: the default (port + 10000) may be taken or out of range.
      const node = { host: "127.0.0.1", port: freePort() };
      const busPort = freePort();
      nodes.push(node);
      procs.push(
        Bun.spawn(
          [
            "redis-server",
            "--port", String(node.port),
            "--bind", node.host,
            "--cluster-enabled", "yes",
            "--cluster-port", String(busPort),
            "--cluster-config-file", join(dir, `nodes-${node.port}.conf`),
            "--cluster-node-timeout", "2000",
            // A replica syncs at once (the default waits 5 s for more replicas): one that never
            // synced is refused a failover, its data being "too old".
            "--repl-diskless-sync-delay", "0",
            "--dir", dir,
            "--save", "",
            "--appendonly", "no",
            "--logfile", join(dir, `redis-${node.port}.log`),
          ],
          { stdin: "ignore", stdout: "ignore", stderr: "inherit" },
        ),
      );
    }
    for (const node of nodes)
      await eventually(async () => ((await cli(node, "ping").catch(() => "")).trim() === "PONG" ? true : undefined), 10_000, `redis-server on ${node.port}`);
    const proc = Bun.spawn(
      ["redis-cli", "--cluster", "create", ...nodes.map((n) => `${n.host}:${n.port}`), "--cluster-replicas", String(replicas), "--cluster-yes"],
      { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    if (code !== 0) throw new Error(`redis-cli --cluster create exited ${code}: ${out}`);
    // Every node must see the whole cluster (all slots assigned, every node known) before clients connect.
    for (const node of nodes)
      await eventually(
        async () => {
          const info = await cli(node, "cluster", "info");
          return info.includes("cluster_state:ok") && info.includes(`cluster_known_nodes:${total}`) ? true : undefined;
        },
        15_000,
        `cluster_state:ok on ${node.port}`,
      );
    // And every replica has its primary's data, so that it may be promoted.
    for (const node of nodes)
      await eventually(
        async () => {
          const info = await cli(node, "info", "replication");
          return info.includes("role:master") || info.includes("master_link_status:up") ? true : undefined;
        },
        15_000,
        `the replica on ${node.port} to sync`,
      );
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    nodes,
    nodeList: nodes.map((n) => `${n.host}:${n.port}`).join(","),
    cli,
    async flushAll() {
      // All nodes at once, each in one MULTI (count, then flush), over connections of their own:
      // as close to one instant as a cluster allows, so a reconciler pass cannot run in between.
      const conns = nodes.map((n) => new Redis({ host: n.host, port: n.port, lazyConnect: true, maxRetriesPerRequest: 1 }));
      try {
        const replies = await Promise.all(conns.map((c) => c.multi().dbsize().flushall().exec()));
        return replies.reduce((sum, reply) => {
          const [error, size] = reply?.[0] ?? [new Error("FLUSHALL transaction discarded"), 0];
          if (error) throw error;
          return sum + Number(size);
        }, 0);
      } finally {
        for (const c of conns) c.disconnect();
      }
    },
    async primaryOf(slot, node = nodes[0]!) {
      // CLUSTER NODES: "<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <state> <slot ranges...>"
      for (const line of (await cli(node, "cluster", "nodes")).trim().split("\n")) {
        const fields = line.split(" ");
        if (!fields[2]!.includes("master") || fields[2]!.includes("fail")) continue;
        for (const range of fields.slice(8)) {
          const [from, to = from] = range.split("-").map(Number);
          if (slot >= from! && slot <= to!) {
            const [host, port] = fields[1]!.split("@")[0]!.split(":");
            return { host: host!, port: Number(port) };
          }
        }
      }
      throw new Error(`no live primary serves slot ${slot}`);
    },
    async kill(node) {
      const i = nodes.findIndex((n) => n.port === node.port);
      if (i < 0) throw new Error(`no node on port ${node.port}`);
      procs[i]!.kill("SIGKILL");
      await procs[i]!.exited;
    },
    stop,
  };
}

/**
 * A cluster as a service of a test context: `start` in the suite's beforeAll (before the context
 * is created: it returns the config that points the context at the cluster), `stop` in its
 * afterAll (after the context is closed: its cleanup still needs the cluster). See e2eSuite.
 */
export function redisClusterService(options: ClusterShape = {}) {
  let cluster: RedisCluster | undefined;
  return {
    get cluster(): RedisCluster {
      if (!cluster) throw new Error("the Redis cluster is not started (the suite's beforeAll did not run or failed)");
      return cluster;
    },
    async start(): Promise<Partial<Config>> {
      cluster = await startRedisCluster(options);
      return { redisClusterNodes: cluster.nodes };
    },
    async stop() {
      await cluster?.stop();
    },
  };
}
