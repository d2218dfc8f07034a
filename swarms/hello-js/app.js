// `hello-js`: the smallest JavaScript swarm written with `chassis-swarm.js`
// (guest-sdk/js).
//
// - `hello` greets `name` (a string, default "world"); any other `name` is
//   an invalid payload.
// - `fail` throws `new Error("boom")` two calls deep: the helper turns the
//   uncaught exception into a failed task whose message carries the error
//   and the innermost lines of its stack.

import { InvalidPayload, info, swarm } from "../../guest-sdk/js/chassis-swarm.js";

function explode(what) {
  throw new Error(what);
}

function work() {
  explode("boom");
}

export const task = swarm({
  hello(payload) {
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      throw new InvalidPayload("expected an object");
    }
    const name = payload.name ?? "world";
    if (typeof name !== "string") throw new InvalidPayload("`name` must be a string");
    info(`greeting ${name}`);
    return { greeting: `Hello, ${name}!` };
  },
  fail() {
    work();
  },
});
