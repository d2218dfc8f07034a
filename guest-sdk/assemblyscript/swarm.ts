// The AssemblyScript SDK of IF.chassis: what a swarm's module imports.
//
//     import { Task, Output, register, ok, invalidPayload, info } from "../chassis/swarm";
//
//     function hello(task: Task): Output {
//       return ok('{"greeting":"hello"}');
//     }
//
//     register("hello", hello);
//
// `register` at the module's top level names a task type and its handler
// (the order of registration is `describe`'s order). A handler gets the
// task (`id`, `type`, `payload` as JSON text) and returns `ok(json)`,
// `invalidPayload(message)` or `failed(message)`; `json.ts` reads payloads
// and writes outputs. The log is `trace` .. `error`. An `abort` (a failed
// assertion, an index out of range) is logged and stops the task.

import { logLine } from "./abi";

/** One task, as the host handed it. */
export class Task {
  constructor(
    /** The caller's id for the task. */
    public id: string,
    /** The task type (one of those registered). */
    public type: string,
    /** The payload: JSON text. */
    public payload: string,
  ) {}
}

/** What a handler returns: `kind` 0 ok (`text` the output JSON), 1
 * invalid payload, 2 failed (`text` the message). */
export class Output {
  constructor(public kind: i32, public text: string) {}
}

/** Success with the output JSON text. */
export function ok(json: string): Output {
  return new Output(0, json);
}

/** The payload is not what the task type expects. */
export function invalidPayload(message: string): Output {
  return new Output(1, message);
}

/** The task ran and failed. */
export function failed(message: string): Output {
  return new Output(2, message);
}

/** A task handler. */
export type Handler = (task: Task) => Output;

const types = new Array<string>();
const handlers = new Array<Handler>();

/** Serve `type` with `handler`. Registering a type twice keeps the first. */
export function register(type: string, handler: Handler): void {
  if (types.includes(type)) return;
  types.push(type);
  handlers.push(handler);
}

/** The registered task types, in registration order. */
export function taskTypes(): string[] {
  return types;
}

/** The handler of `type`, or null. */
export function handlerFor(type: string): Handler | null {
  for (let i = 0; i < types.length; i++) {
    if (types[i] == type) return handlers[i];
  }
  return null;
}

/** A line in the host's log at trace level. */
export function trace(message: string): void {
  logLine(0, message);
}
/** At debug level. */
export function debug(message: string): void {
  logLine(1, message);
}
/** At info level. */
export function info(message: string): void {
  logLine(2, message);
}
/** At warn level. */
export function warn(message: string): void {
  logLine(3, message);
}
/** At error level. */
export function error(message: string): void {
  logLine(4, message);
}
