/**
 * SSE clients for bench/sse.ts, in a process of their own: opens every stream of its plan
 * (a raw socket each), then measures, for each event each client receives, the delay
 * from the supervisor's event (its time, sent by the benchmark on stdin as `E <key> <ms>`) to
 * the arrival of the bytes that carried it. Clocks: performance.timeOrigin + performance.now()
 * in both processes (the same host's clock, sub-millisecond).
 *
 * Environment: BENCH_SSE_BASE (http://host:port/api/v1), BENCH_SSE_KEY, BENCH_SSE_PLAN (JSON
 * array of paths under the base). stdout: `READY <n>` once every stream said `: connected`, then
 * `RESULT <json>` after `STOP` on stdin. `RESET` on stdin starts the measured window.
 */
import Redis from "ioredis";

const base = process.env.BENCH_SSE_BASE!;
const key = process.env.BENCH_SSE_KEY!;
const plan = JSON.parse(process.env.BENCH_SSE_PLAN!) as string[];

const now = () => performance.timeOrigin + performance.now();

/** Latency histograms: 10 µs buckets up to 10 s, then one overflow bucket. */
const BUCKET_MS = 0.01;
const BUCKETS = 1_000_000;

class Histogram {
  counts = new Uint32Array(BUCKETS + 1);
  n = 0;
  max = 0;
  record(ms: number) {
    this.counts[Math.max(0, Math.min(BUCKETS, Math.floor(ms / BUCKET_MS)))]!++;
    this.n++;
    if (ms > this.max) this.max = ms;
  }
  sparse(): [number, number][] {
    const out: [number, number][] = [];
    for (let b = 0; b <= BUCKETS; b++) if (this.counts[b]! > 0) out.push([b, this.counts[b]!]);
    return out;
  }
}

/** Supervisor event -> bytes at an SSE client. */
let delivery = new Histogram();
/** Supervisor event -> the Redis message at a subscriber of our own (the bus alone, without the API). */
let bus = new Histogram();
const record = (ms: number) => delivery.record(ms);

/** Emission times by event key; events that arrive before their emission line wait in `early` (and `busEarly`). */
const emitted = new Map<string, number>();
const early = new Map<string, number[]>();
const busEarly = new Map<string, number>();
let received = 0;
let bytes = 0;
let unmatched = 0;
let measuring = false;

function onEvent(eventKey: string, at: number) {
  received++;
  if (!measuring) return;
  const t = emitted.get(eventKey);
  if (t !== undefined) return record(at - t);
  const list = early.get(eventKey);
  if (list) list.push(at);
  else early.set(eventKey, [at]);
}

const decoder = new TextDecoder();
const DATA = /"task_id":"([^"]+)","agent_id":"[^"]+","status":"([a-z]+)","percent":(\d+|null)/;

interface Stream {
  connected: Promise<void>;
  ended: boolean;
  close(): void;
}

const target = new URL(base);

/**
 * One stream over a raw socket (Bun.connect): a hand-written HTTP/1.1 request, the response head,
 * then the chunked body, parsed as it arrives. Cheaper per chunk than fetch's body stream, so
 * these processes measure the server rather than themselves.
 */
function open(path: string): Stream {
  let markConnected!: () => void;
  let fail!: (e: unknown) => void;
  const connected = new Promise<void>((resolve, reject) => {
    markConnected = resolve;
    fail = reject;
  });
  let head = true;
  let raw = ""; // undecoded bytes of the chunked body (latin1: one char per byte)
  let text = ""; // the body, split into SSE frames
  let isConnected = false;
  let socketRef: { end(): void } | null = null;
  const stream: Stream = { connected, ended: false, close: () => socketRef?.end() };
  const frames = (at: number) => {
    let end: number;
    while ((end = text.indexOf("\n\n")) >= 0) {
      const frame = text.slice(0, end);
      text = text.slice(end + 2);
      if (frame.charCodeAt(0) === 58 /* : */) {
        if (!isConnected && frame.startsWith(": connected")) {
          isConnected = true;
          markConnected();
        }
        continue;
      }
      const type = frame.includes("\nevent: progress\n") ? "progress" : "status";
      const m = DATA.exec(frame);
      if (m) onEvent(`${m[1]}|${type}|${m[2]}|${m[3]}`, at);
    }
  };
  void Bun.connect({
    hostname: target.hostname,
    port: Number(target.port),
    socket: {
      open(socket) {
        socketRef = socket;
        socket.write(`GET ${target.pathname}${path} HTTP/1.1\r\nHost: ${target.host}\r\nX-API-Key: ${key}\r\nAccept: text/event-stream\r\n\r\n`);
      },
      data(_socket, data) {
        const at = now();
        bytes += data.length;
        raw += data.toString("latin1");
        if (head) {
          const split = raw.indexOf("\r\n\r\n");
          if (split < 0) return;
          const status = raw.slice(9, 12);
          if (status !== "200") return fail(new Error(`${path}: HTTP ${status}: ${raw.slice(0, 300)}`));
          head = false;
          raw = raw.slice(split + 4);
        }
        // Chunked transfer coding: <hex size>\r\n<data>\r\n ... 0\r\n\r\n
        for (;;) {
          const nl = raw.indexOf("\r\n");
          if (nl < 0) break;
          const size = Number.parseInt(raw.slice(0, nl), 16);
          if (raw.length < nl + 2 + size + 2) break;
          text += raw.slice(nl + 2, nl + 2 + size);
          raw = raw.slice(nl + 2 + size + 2);
          if (size === 0) break;
        }
        frames(at);
      },
      close() {
        stream.ended = true;
      },
      error(_socket, error) {
        fail(error);
      },
    },
  }).catch(fail);
  return stream;
}

// BENCH_SSE_BUS_CHANNEL (one client process gets it): the bus latency, measured beside the API.
const busChannel = process.env.BENCH_SSE_BUS_CHANNEL;
let busSubscriber: Redis | null = null;
if (busChannel) {
  busSubscriber = new Redis(process.env.BENCH_SSE_REDIS_URL!);
  busSubscriber.on("message", (_channel: string, message: string) => {
    const at = now();
    if (!measuring) return;
    const events = JSON.parse(message.slice(message.indexOf(" ") + 1)) as { task_id: string; type: string; status: string; percent: number | null }[];
    for (const e of events) {
      const eventKey = `${e.task_id}|${e.type}|${e.status}|${e.percent}`;
      const t = emitted.get(eventKey);
      if (t !== undefined) bus.record(at - t);
      else busEarly.set(eventKey, at);
    }
  });
  await busSubscriber.subscribe(busChannel);
}

const streams: Stream[] = [];
for (let i = 0; i < plan.length; i += 50) {
  const batch = plan.slice(i, i + 50).map(open);
  streams.push(...batch);
  await Promise.all(batch.map((s) => s.connected));
}
console.log(`READY ${streams.length}`);

let pendingLine = "";
for await (const chunk of Bun.stdin.stream()) {
  pendingLine += decoder.decode(chunk, { stream: true });
  let nl: number;
  let stop = false;
  while ((nl = pendingLine.indexOf("\n")) >= 0) {
    const line = pendingLine.slice(0, nl);
    pendingLine = pendingLine.slice(nl + 1);
    if (line.startsWith("E ")) {
      const space = line.lastIndexOf(" ");
      const eventKey = line.slice(2, space);
      const t = Number(line.slice(space + 1));
      emitted.set(eventKey, t);
      const waiting = early.get(eventKey);
      if (waiting) {
        early.delete(eventKey);
        for (const at of waiting) record(at - t);
      }
      const busAt = busEarly.get(eventKey);
      if (busAt !== undefined) {
        busEarly.delete(eventKey);
        bus.record(busAt - t);
      }
      // Keep the map small: keys older than 60 s will not be seen again.
      if (emitted.size > 500_000) for (const [k, v] of emitted) if (v < t - 60_000) emitted.delete(k);
    } else if (line === "RESET") {
      delivery = new Histogram();
      bus = new Histogram();
      received = 0;
      bytes = 0;
      measuring = true;
    } else if (line === "STOP") stop = true;
  }
  if (stop) break;
}

for (const list of early.values()) unmatched += list.length;
const ended = streams.filter((s) => s.ended).length;
const result = {
  streams: streams.length,
  counted: delivery.n,
  received,
  bytes,
  unmatched,
  maxMs: delivery.max,
  sparse: delivery.sparse(),
  bus: { counted: bus.n, maxMs: bus.max, sparse: bus.sparse() },
  bucketMs: BUCKET_MS,
  ended,
};
console.log(`RESULT ${JSON.stringify(result)}`);
busSubscriber?.disconnect();
for (const s of streams) s.close();
process.exit(0);
