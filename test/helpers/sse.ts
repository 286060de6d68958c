/**
 * A Server-Sent Events client over a real socket (fetch), for tests: every message and comment
 * in arrival order, with its arrival time, and waits on them instead of sleeping.
 */
import { TEST_API_KEY } from "./app.ts";

export interface SseMessage {
  /** `event:` (default "message"); "comment" for a `: ...` line. */
  event: string;
  id?: string;
  data?: string;
  /** The comment's text. */
  comment?: string;
  /** performance.now() when it arrived. */
  at: number;
}

export class SseClient {
  readonly messages: SseMessage[] = [];
  /** Resolves when the server ends the stream (or it is closed here); never rejects. */
  readonly done: Promise<void>;
  ended = false;
  error: unknown = null;
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly status: number,
    readonly headers: Headers,
    readonly text: string,
    body: ReadableStream<Uint8Array> | null,
    private readonly abort: AbortController,
  ) {
    this.done = body ? this.read(body) : Promise.resolve().then(() => this.finish());
  }

  static async open(url: string, options: { headers?: Record<string, string>; anonymous?: boolean } = {}): Promise<SseClient> {
    const abort = new AbortController();
    const headers = { accept: "text/event-stream", ...(options.anonymous ? {} : { "x-api-key": TEST_API_KEY }), ...options.headers };
    const res = await fetch(url, { headers, signal: abort.signal });
    if (!res.headers.get("content-type")?.startsWith("text/event-stream")) return new SseClient(res.status, res.headers, await res.text(), null, abort);
    return new SseClient(res.status, res.headers, "", res.body, abort);
  }

  /** The events (comments left out). */
  events(): SseMessage[] {
    return this.messages.filter((m) => m.event !== "comment");
  }

  /** Parsed JSON data of the events named `event`. */
  // biome-ignore lint: tests read arbitrary JSON
  data(event: string): any[] {
    return this.events()
      .filter((m) => m.event === event)
      .map((m) => JSON.parse(m.data ?? "null"));
  }

  /** The first message (past or future) matching `predicate`. */
  next(predicate: (m: SseMessage) => boolean, timeoutMs = 10_000, what = "a matching SSE message"): Promise<SseMessage> {
    // Each message is looked at once, however many arrive while waiting.
    let seen = 0;
    return this.until(
      () => {
        for (; seen < this.messages.length; seen++) if (predicate(this.messages[seen]!)) return this.messages[seen];
        return undefined;
      },
      timeoutMs,
      what,
    );
  }

  /** Resolves with `check()`'s value once it is not undefined, re-checked on every message. */
  until<T>(check: () => T | undefined, timeoutMs = 10_000, what = "condition"): Promise<T> {
    return new Promise((resolve, reject) => {
      const probe = () => {
        const value = check();
        if (value !== undefined) {
          cleanup();
          resolve(value);
        } else if (this.ended) {
          cleanup();
          reject(new Error(`stream ended before ${what}; got ${JSON.stringify(this.messages.slice(-5))}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no ${what} within ${timeoutMs} ms; last: ${JSON.stringify(this.messages.slice(-5))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(probe);
      };
      this.waiters.add(probe);
      probe();
    });
  }

  /** Resolves when the server has ended the stream, or rejects after `timeoutMs`. */
  async ends(timeoutMs = 10_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.done,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`stream still open after ${timeoutMs} ms`)), timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  close(): void {
    this.abort.abort();
  }

  private async read(body: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    let buffered = "";
    let current: Partial<SseMessage> = {};
    try {
      for await (const chunk of body) {
        buffered += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          const at = performance.now();
          if (line === "") {
            if (current.data !== undefined || current.event !== undefined || current.id !== undefined)
              this.messages.push({ event: current.event ?? "message", id: current.id, data: current.data, at });
            current = {};
          } else if (line.startsWith(":")) this.messages.push({ event: "comment", comment: line.slice(1).trim(), at });
          else {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") current.data = current.data === undefined ? value : `${current.data}\n${value}`;
            else if (field === "event") current.event = value;
            else if (field === "id") current.id = value;
          }
        }
        for (const w of [...this.waiters]) w();
      }
    } catch (error) {
      this.error = error;
    }
    this.finish();
  }

  private finish() {
    this.ended = true;
    for (const w of [...this.waiters]) w();
  }
}
