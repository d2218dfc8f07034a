// `chassis-swarm.js`: write an IF.chassis swarm in plain JavaScript.
//
// The JavaScript counterpart of the Rust SDK (`guest-sdk/src/lib.rs`). A
// swarm module exports the object `swarm` builds, one handler per task type:
//
//     import { InvalidPayload, info, swarm } from "../../guest-sdk/js/chassis-swarm.js";
//
//     export const task = swarm({
//       hello(payload) {
//         const name = payload.name ?? "world";
//         if (typeof name !== "string") throw new InvalidPayload("`name` must be a string");
//         info(`greeting ${name}`);
//         return { greeting: `Hello, ${name}!` };
//       },
//     });
//
// What the `task` export does with one request:
//
// - `describe()` returns the handlers' task types, in the order given; an
//   `execute` for any other type is refused with `unknown-task-type`.
// - The payload (JSON text) is parsed into an object (or array, string,
//   ...); text that is not JSON is refused with `invalid-payload` and the
//   parser's message. A handler given as `{ raw: true, run(text) {...} }`
//   gets the text instead.
// - The handler's return value is serialized to the JSON result text
//   (`undefined` becomes `null`).
// - `throw new InvalidPayload("...")` / `throw new TaskFailed("...")` refuse
//   the task with that variant and message. Anything else thrown fails the
//   task (`failed`) with the error's name, message and the innermost lines
//   of its stack (a thrown non-Error value: its `String(value)`, or a plain
//   object's JSON), instead of trapping the component.
//
// componentize-js builds this file into each JavaScript swarm that imports
// it by relative path (see xtask/src/js.rs). It needs a world with the `log`
// import: all the chassis worlds have it.

import { log as writeLog } from "infrafabric:chassis/log@0.1.0";

// Bounds of a failure message built from an uncaught exception: the error's
// own line, and the stack lines kept after it.
const MAX_ERROR_CHARS = 1000;
const MAX_STACK_BYTES = 400;
const MAX_FRAMES = 4;

// ---- errors a handler throws on purpose -----------------------------------

/** Base of the errors a handler throws to refuse a task. */
export class TaskError extends Error {}

/** The payload was not what the task type expects (`invalid-payload`). */
export class InvalidPayload extends TaskError {
  constructor(message) {
    super(message);
    this.name = "InvalidPayload";
  }
}

/** The task ran and failed (`failed`). */
export class TaskFailed extends TaskError {
  constructor(message) {
    super(message);
    this.name = "TaskFailed";
  }
}

// ---- logging --------------------------------------------------------------

/** Write one line to the host's log at `level` ("trace", "debug", "info",
 * "warn" or "error"); the host prefixes it with the swarm id. */
export function log(level, message) {
  writeLog(level, String(message));
}

/** Log at `trace` level. */
export const trace = (message) => log("trace", message);
/** Log at `debug` level. */
export const debug = (message) => log("debug", message);
/** Log at `info` level. */
export const info = (message) => log("info", message);
/** Log at `warn` level. */
export const warn = (message) => log("warn", message);
/** Log at `error` level. */
export const error = (message) => log("error", message);

// ---- turning a thrown value into a message --------------------------------

function truncate(text, limit) {
  return text.length <= limit ? text : `${text.slice(0, limit - 3)}...`;
}

function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/** `String(value)`, or a fallback for values that refuse conversion. */
function describeValue(value) {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** `Name: message`, then the innermost stack lines (the handler's and what
 * it called), bounded to a few hundred bytes. */
export function failureMessage(thrown) {
  if (!(thrown instanceof Error)) {
    let text = describeValue(thrown);
    if (text === "[object Object]") {
      // A plain object: its JSON says more.
      try {
        text = JSON.stringify(thrown) ?? text;
      } catch {
        // Cyclic or holding a BigInt: keep the tag.
      }
    }
    return truncate(`uncaught exception: ${text}`, MAX_ERROR_CHARS);
  }
  const head = truncate(describeValue(thrown), MAX_ERROR_CHARS);
  let stack = "";
  try {
    stack = typeof thrown.stack === "string" ? thrown.stack : "";
  } catch {
    // A getter that throws: no stack.
  }
  const kept = [];
  let size = 0;
  for (let line of stack.split("\n")) {
    line = line.trim();
    // Some engines (V8) start the stack with the error's own line.
    if (line === "" || (kept.length === 0 && line === head)) continue;
    // Frames from here outwards are this module's and the engine's.
    if (line.includes("runHandlerOfChassisSwarm")) break;
    // `explode@file:///long/path/app.js:3:9` -> `explode@app.js:3:9`.
    line = line.replace(/(?:[a-z]+:\/\/)?[^\s@()]*\/([^\s/@()]+:\d+:\d+)/g, "$1");
    line = truncate(line, MAX_STACK_BYTES);
    const cost = utf8Length(line) + 3;
    if (kept.length === MAX_FRAMES || (kept.length > 0 && size + cost > MAX_STACK_BYTES)) break;
    kept.push(`  ${line}`);
    size += cost;
  }
  return kept.length === 0 ? head : [head, "stack (innermost first):", ...kept].join("\n");
}

// ---- the `task` export ----------------------------------------------------

/** A refusal in the form componentize-js returns as the WIT `task-error`. */
function refusal(tag, val) {
  return { tag, val: String(val) };
}

/** Whether `thrown` already is a `{ tag, val }` task-error. */
function isRefusal(thrown) {
  return (
    thrown !== null &&
    typeof thrown === "object" &&
    !(thrown instanceof Error) &&
    ["unknown-task-type", "invalid-payload", "failed"].includes(thrown.tag) &&
    typeof thrown.val === "string"
  );
}

// Named so that `failureMessage` can cut the stack here.
function runHandlerOfChassisSwarm(run, payload) {
  return run(payload);
}

/**
 * The `task` export for a swarm whose task types are the keys of
 * `handlers`. Each value is a function of the parsed payload, or
 * `{ raw: true, run }` with `run` a function of the payload's JSON text.
 */
export function swarm(handlers) {
  const table = new Map();
  for (const [taskType, handler] of Object.entries(handlers)) {
    if (typeof handler === "function") {
      table.set(taskType, { run: handler, raw: false });
    } else if (handler !== null && typeof handler === "object" && typeof handler.run === "function") {
      table.set(taskType, { run: handler.run, raw: handler.raw === true });
    } else {
      throw new TypeError(`the handler of task type ${taskType} is not a function`);
    }
  }
  return {
    describe() {
      return [...table.keys()];
    },
    execute(request) {
      const entry = table.get(request.taskType);
      if (entry === undefined) throw refusal("unknown-task-type", request.taskType);
      let payload = request.payload;
      if (!entry.raw) {
        try {
          payload = JSON.parse(request.payload);
        } catch (e) {
          throw refusal("invalid-payload", `${request.taskType}: ${e instanceof Error ? e.message : describeValue(e)}`);
        }
      }
      let result;
      try {
        result = runHandlerOfChassisSwarm(entry.run, payload);
      } catch (e) {
        if (e instanceof InvalidPayload) throw refusal("invalid-payload", e.message);
        if (e instanceof TaskError) throw refusal("failed", e.message);
        if (isRefusal(e)) throw e;
        let message;
        try {
          message = failureMessage(e);
        } catch {
          message = "uncaught exception";
        }
        throw refusal("failed", message);
      }
      if (result !== null && typeof result === "object" && typeof result.then === "function") {
        throw refusal("failed", "the handler returned a Promise: handlers must be synchronous");
      }
      let text;
      try {
        text = JSON.stringify(result === undefined ? null : result);
      } catch (e) {
        throw refusal("failed", `serializing result: ${e instanceof Error ? e.message : describeValue(e)}`);
      }
      // Functions and symbols serialize to nothing.
      return text === undefined ? "null" : text;
    },
  };
}
