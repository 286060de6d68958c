/**
 * The Bun Worker thread entry of an actor: wires the thread's messages to an
 * Actor (workers/actor.ts) with its real dependencies (workers/actorDeps.ts).
 */
import { Actor } from "./actor.ts";
import { openActorDeps } from "./actorDeps.ts";
import { isSupervisorMessage, type WorkerMessage } from "../src/protocol/messages.ts";
import type { TaskHandler } from "./handlers/types.ts";

declare const self: Worker;

/**
 * Entry for a worker script: the first `init` creates the actor; later messages go to it.
 * `outgoing` sees each message before it is posted (fixtures use it to die at a chosen moment).
 */
export function runActor(handler: TaskHandler, outgoing?: (message: WorkerMessage) => void) {
  let actor: Actor | null = null;
  self.addEventListener("message", (event: MessageEvent) => {
    const message: unknown = event.data;
    if (!isSupervisorMessage(message)) return;
    if (message.type === "init" && !actor) {
      const deps = openActorDeps(message.workerId, message.settings);
      const a = new Actor(message.workerId, message.settings, handler, {
          send: (m) => {
            outgoing?.(m);
            self.postMessage(m);
          },
        }, deps);
      actor = a;
      a.run()
        .then(() => deps.close())
        .catch((error) => {
          // An actor that cannot go on dies loudly; the supervisor replaces the thread.
          throw error;
        });
      return;
    }
    actor?.handle(message);
  });
}
