/** JSON logs to stdout (pino). */
import pino, { type DestinationStream, type Logger } from "pino";

/** `destination` defaults to stdout; tests pass a stream to read the lines back. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}, destination?: DestinationStream): Logger {
  const options = { level, base: { service: "agentq", ...bindings }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(options, destination) : pino(options);
}
