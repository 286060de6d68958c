/**
 * A TCP relay the test controls, in front of the shared PostgreSQL or Redis server: point a
 * process's DATABASE_URL / REDIS_URL at it, then `down()` to simulate an outage (the listener
 * closes and every relayed connection is cut; new connections are refused) and `up()` to end it.
 * The shared servers themselves are never touched.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { freePort } from "./metrics.ts";

export class Relay {
  readonly port: number;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly target: { host: string; port: number },
    port = freePort(),
  ) {
    this.port = port;
  }

  /** `url` with its host and port replaced by this relay's. */
  urlFor(url: string): string {
    const u = new URL(url);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  get isUp(): boolean {
    return this.server !== null;
  }

  up(): Promise<void> {
    if (this.server) return Promise.resolve();
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
  }

  /** Stops listening and cuts every relayed connection. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

export function relayTo(url: string): Relay {
  const u = new URL(url);
  return new Relay({ host: u.hostname, port: Number(u.port || (u.protocol.startsWith("redis") ? 6379 : 5432)) });
}
