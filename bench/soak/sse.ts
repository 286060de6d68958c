/**
 * SSE clients of the soak, in this process: streams on the API process's live task events
 * endpoint (GET /api/v1/events), some unfiltered and some on one agent each. They count the
 * events and bytes they receive and reopen a stream the server ended (counted: a soak should
 * see none). Events are counted, not kept; bench/sse.ts measures their latency.
 */
import { API_KEY } from "./setup.ts";

export interface SseStats {
  streams: number;
  events: number;
  bytes: number;
  /** Streams that ended or failed and were reopened. */
  reopened: number;
  stop(): void;
}

export function startSseClients(options: { base: string; firehose: number; filtered: number; agents: string[] }): SseStats {
  const abort = new AbortController();
  const stats: SseStats = { streams: options.firehose + options.filtered, events: 0, bytes: 0, reopened: 0, stop: () => abort.abort() };
  const follow = async (path: string) => {
    while (!abort.signal.aborted) {
      try {
        const res = await fetch(`${options.base}${path}`, { headers: { "x-api-key": API_KEY, accept: "text/event-stream" }, signal: abort.signal });
        if (res.status !== 200 || !res.body) throw new Error(`HTTP ${res.status}`);
        const decoder = new TextDecoder();
        // The last 5 characters of the previous chunk: a "\ndata:" split across chunks is still counted once.
        let tail = "";
        for await (const chunk of res.body) {
          stats.bytes += chunk.length;
          const text = tail + decoder.decode(chunk, { stream: true });
          // One "data:" line per event (the payload is one line of JSON); comments (": ping") are not events.
          // The stream opens with a ": connected" comment, so every data line follows a newline.
          for (let i = text.indexOf("\ndata:"); i >= 0; i = text.indexOf("\ndata:", i + 1)) stats.events++;
          tail = text.slice(-5);
        }
      } catch (error) {
        if (abort.signal.aborted) return;
        console.error(`SSE stream ${path} failed: ${String(error)}`);
      }
      if (abort.signal.aborted) return;
      stats.reopened++;
      await Bun.sleep(500);
    }
  };
  for (let i = 0; i < options.firehose; i++) void follow("/events");
  for (let i = 0; i < options.filtered; i++) void follow(`/events?agent_id=${options.agents[i % options.agents.length]}`);
  return stats;
}
