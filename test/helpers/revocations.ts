/** Waiting on API-key revocation messages (instead of sleeping). */
import type { KeyRevocations } from "../../src/queue/keyRevocations.ts";

/**
 * Resolves with performance.now() when `bus` hears that `keyId` was revoked.
 * Listeners run in the order they were added, so by then the caches listening
 * on the same bus (added earlier) have evicted it.
 */
export function nextRevocation(bus: KeyRevocations, keyId: string, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no revocation of ${keyId} within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = bus.listen({
      revoked(ids) {
        if (!ids.includes(keyId)) return;
        clearTimeout(timer);
        stop();
        resolve(performance.now());
      },
      reset() {},
    });
  });
}
