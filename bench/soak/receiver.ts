/**
 * The soak test's webhook receiver: a real Bun.serve on loopback that answers 503 to a share of
 * requests at random (so retries are part of the load) and 204 to the rest. It keeps only a
 * count per webhook-id, not the requests (test/helpers/receiver.ts keeps every body, which over
 * a long run would grow this process by hundreds of MB and tell nothing more).
 */
export interface SoakReceiver {
  url: string;
  requests: number;
  failed: number;
  /** webhook-id -> 2xx answers given to it. */
  accepted: Map<string, number>;
  stop(): void;
}

export function startSoakReceiver(failRatio: number): SoakReceiver {
  const receiver: SoakReceiver = {
    url: "",
    requests: 0,
    failed: 0,
    accepted: new Map(),
    stop: () => void server.stop(true),
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      await request.arrayBuffer();
      receiver.requests++;
      if (Math.random() < failRatio) {
        receiver.failed++;
        return new Response("try again", { status: 503 });
      }
      const id = request.headers.get("webhook-id") ?? "";
      receiver.accepted.set(id, (receiver.accepted.get(id) ?? 0) + 1);
      return new Response(null, { status: 204 });
    },
  });
  receiver.url = `http://127.0.0.1:${server.port}/hook`;
  return receiver;
}
