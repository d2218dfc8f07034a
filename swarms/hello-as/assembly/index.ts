// `hello-as`: a swarm for IF.chassis, in AssemblyScript.
//
// - `hello`: {"name": "Ada"} -> {"greeting": "Hello, Ada!"} (the name
//   defaults to "world").
// - `fail`: fails on purpose with the message "boom".
//
// The template `chassis new --lang assemblyscript` makes, with `fail` added;
// the bench's trivial AssemblyScript task (figure g).
//
// Build with `chassis build`, try it with `chassis test` (the cases in
// tests.toml) and `chassis run . --task hello`. The SDK is in chassis/
// (written by `chassis build`): `swarm.ts` (tasks, results, the log),
// `json.ts`, and the imports your world has. Math.random, Date, trace and
// console have no host here: the build says so if they are used.

import { Output, Task, failed, info, invalidPayload, ok, register } from "../chassis/swarm";
import { JsonWriter, KIND_OBJECT, KIND_STRING, lastError, parse } from "../chassis/json";

function hello(task: Task): Output {
  const payload = parse(task.payload);
  if (payload === null) return invalidPayload("the payload is not JSON: " + lastError);
  if (payload.kind != KIND_OBJECT) return invalidPayload("expected an object");
  const unknown = payload.unknownKey(["name"]);
  if (unknown !== null) return invalidPayload("unknown field `" + unknown + "`, expected `name`");
  let who = "world";
  const name = payload.get("name");
  if (name !== null) {
    if (name.kind != KIND_STRING) return invalidPayload("`name` must be a string");
    who = name.str;
  }
  info("greeting " + who);

  const out = new JsonWriter();
  out.beginObject();
  out.key("greeting");
  out.string("Hello, " + who + "!");
  out.endObject();
  return ok(out.toString());
}

function fail(task: Task): Output {
  return failed("boom");
}

register("hello", hello);
register("fail", fail);
