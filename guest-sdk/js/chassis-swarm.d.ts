// `chassis-swarm.d.ts`: the types of `chassis-swarm.js`, for swarms written
// in TypeScript. The request the `task` export takes and the log's levels
// are the declarations jco generates from the WIT (`chassis build` writes
// them into the project's `chassis/types/`), so the helper and the world
// cannot drift apart.

import type { Level } from "infrafabric:chassis/log@0.1.0";

declare global {
  /** UTF-8 text to bytes, as the engine provides it. */
  class TextEncoder {
    encode(input?: string): Uint8Array;
  }
  /** Bytes to text, as the engine provides it (`fatal`: invalid UTF-8
   * throws instead of becoming U+FFFD). */
  class TextDecoder {
    constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
    decode(input?: ArrayBufferView | ArrayBuffer, options?: { stream?: boolean }): string;
  }
}

/** A value JSON can hold: what a handler gets as its payload (after a
 * check of its shape) and what it returns. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Base of the errors a handler throws to refuse a task. */
export class TaskError extends Error {}

/** The payload was not what the task type expects (`invalid-payload`). */
export class InvalidPayload extends TaskError {
  constructor(message: string);
}

/** The task ran and failed (`failed`). */
export class TaskFailed extends TaskError {
  constructor(message: string);
}

/** Write one line to the host's log at `level`; the host prefixes it with
 * the swarm id. */
export function log(level: Level, message: string): void;
/** Log at `trace` level. */
export function trace(message: string): void;
/** Log at `debug` level. */
export function debug(message: string): void;
/** Log at `info` level. */
export function info(message: string): void;
/** Log at `warn` level. */
export function warn(message: string): void;
/** Log at `error` level. */
export function error(message: string): void;

/** `Name: message`, then the innermost stack lines, bounded to a few
 * hundred bytes: the message of a task failed by an uncaught exception. */
export function failureMessage(thrown: unknown): string;

/** A task type's handler: a function of the parsed payload (`unknown`
 * until the handler checks it), or `{ raw: true, run }` for the payload's
 * JSON text. The result is serialized to JSON (`undefined` becomes
 * `null`); it must not be a Promise. */
export type Handler =
  | ((payload: unknown) => unknown)
  | { raw: true; run(text: string): unknown };

/** The `task` export, as the WIT declares it (jco's declaration of
 * `infrafabric:chassis/task`). */
export type TaskExport = typeof import("infrafabric:chassis/task@0.1.0");

/** The `task` export of a swarm whose task types are the keys of
 * `handlers`, in the order given. */
export function swarm(handlers: Record<string, Handler>): TaskExport;
