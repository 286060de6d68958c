/**
 * A real webhook receiver on loopback (Bun.serve): answers from a script of
 * responses and records every request it gets (raw body, headers, time).
 */
export interface ReceivedRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
  at: number;
}

/** What to do with one request: a status (and headers), or hang (never answer). */
export type Reply = number | { status: number; headers?: Record<string, string> } | "hang" | ((req: ReceivedRequest) => Reply);

export interface Receiver {
  url(path?: string): string;
  requests: ReceivedRequest[];
  /** Resolves once `count` requests arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  stop(): void;
}

/**
 * @param replies answered in order; after the last, `fallback` answers every request.
 */
export function startReceiver(replies: Reply[] = [], fallback: Reply = 200): Receiver {
  const requests: ReceivedRequest[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const script = [...replies];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(request) {
      const received: ReceivedRequest = {
        path: new URL(request.url).pathname,
        headers: Object.fromEntries(request.headers),
        body: await request.text(),
        at: performance.now(),
      };
      requests.push(received);
      for (const w of [...waiters]) if (requests.length >= w.count) w.resolve();
      let reply = script.length > 0 ? script.shift()! : fallback;
      while (typeof reply === "function") reply = reply(received);
      if (reply === "hang") return new Promise<Response>(() => {});
      const { status, headers } = typeof reply === "number" ? { status: reply, headers: {} } : reply;
      return new Response(status === 204 ? null : "ok", { status, headers });
    },
  });
  return {
    url: (path = "/hook") => `http://127.0.0.1:${server.port}${path}`,
    requests,
    waitFor(count, timeoutMs = 15_000) {
      if (requests.length >= count) return Promise.resolve(requests.slice(0, count));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`receiver got ${requests.length} of ${count} requests in ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve(requests.slice(0, count));
          },
        });
      });
    },
    stop: () => void server.stop(true),
  };
}
