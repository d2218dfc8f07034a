// misbehave-as: a hostile swarm in AssemblyScript. Each task breaks a rule
// on purpose, or hands the SDK's canonical-ABI readers values the host never
// would, to show they are checked:
//
// | task          | does                                            | the host's answer   |
// |---------------|-------------------------------------------------|---------------------|
// | `oob_write`   | stores past the end of linear memory            | trap (out of bounds) |
// | `spin`        | loops for ever                                  | timeout             |
// | `memory_bomb` | keeps 1 MiB arrays until memory runs out        | memory limit        |
// | `abort`       | throws (AssemblyScript's abort)                 | trap, message logged |
// | `credential`  | reads the credential `token` (its length only)  | the grant decides   |
// | `lift_string` | `{ptr, len}`: reads a string there              | the string, or a trap |
// | `lift_bytes`  | `{ptr, len}`: reads bytes there                 | the bytes, or a trap |
// | `case`        | `{ptr, cases}`: reads a discriminant there      | the case, or a trap |
// | `realloc`     | `{align}`: cabi_realloc with that alignment     | a pointer, or a trap |
// | `echo`        | returns `{"payload": <the payload as a string>}` | the same text back  |
// | `credential_op` | `{op: get/sign/public_key, name}`: sizes only | what the host says |
// | `fetch`       | `{url, method?, body?, credential?, headers?}`  | what the host says  |
// | `credential_loop` | `{name, n}`: reads the credential n times    | memory stays flat   |
// | `lone_surrogate` | logs and returns text with an unpaired surrogate | U+FFFD in its place |
//
// An import's refusal fails the task with `<case>: <the host's reason>`.

import { cabi_realloc, discriminant, liftBytes, liftString } from "../chassis/abi";
import { CredentialResult, getCredential, publicKey, sign } from "../chassis/credentials";
import { Request, fetch } from "../chassis/http";
import { JsonValue, JsonWriter, KIND_NUMBER, KIND_OBJECT, lastError, parse } from "../chassis/json";
import { Output, Task, failed, info, invalidPayload, ok, register } from "../chassis/swarm";

let counter: u64 = 0;
const kept = new Array<Uint8Array>();

function oobWrite(task: Task): Output {
  store<u8>(<usize>0xfffffff0, 1);
  return ok("{}");
}

function spin(task: Task): Output {
  while (true) counter++;
  return ok("{}");
}

function memoryBomb(task: Task): Output {
  while (true) kept.push(new Uint8Array(1 << 20));
  return ok("{}");
}

function hostileAbort(task: Task): Output {
  throw new Error("hostile abort from " + task.type);
}

function credential(task: Task): Output {
  const got = getCredential("token");
  if (!got.ok) return failed(got.errorKind + ": " + got.error);
  return ok('{"length":' + got.value.length.toString() + "}");
}

/** The number `key` of the payload object (a whole number below 2^32). */
function field(payload: JsonValue, key: string): i64 {
  const v = payload.get(key);
  if (v === null || v.kind != KIND_NUMBER || v.number < 0 || v.number > 4294967295) return -1;
  return <i64>v.number;
}

function numbers(task: Task, a: string, b: string): i64[] {
  const payload = parse(task.payload);
  if (payload === null || payload.kind != KIND_OBJECT) return [-1, -1];
  return [field(payload, a), field(payload, b)];
}

function liftStringTask(task: Task): Output {
  const n = numbers(task, "ptr", "len");
  if (n[0] < 0 || n[1] < 0) return invalidPayload("expected {ptr, len}");
  const s = liftString(<usize>n[0], <usize>n[1]);
  return ok('{"units":' + s.length.toString() + "}");
}

function liftBytesTask(task: Task): Output {
  const n = numbers(task, "ptr", "len");
  if (n[0] < 0 || n[1] < 0) return invalidPayload("expected {ptr, len}");
  const b = liftBytes(<usize>n[0], <usize>n[1]);
  return ok('{"bytes":' + b.length.toString() + "}");
}

function caseTask(task: Task): Output {
  const n = numbers(task, "ptr", "cases");
  if (n[0] < 0 || n[1] < 0) return invalidPayload("expected {ptr, cases}");
  return ok('{"case":' + discriminant(<usize>n[0], <u32>n[1]).toString() + "}");
}

function reallocTask(task: Task): Output {
  const n = numbers(task, "align", "size");
  if (n[0] < 0 || n[1] < 0) return invalidPayload("expected {align, size}");
  const at = cabi_realloc(0, 0, <usize>n[0], <usize>n[1]);
  return ok('{"aligned":' + ((at & (<usize>n[0] - 1)) == 0 ? "true" : "false") + "}");
}

function echo(task: Task): Output {
  if (parse(task.payload) === null) return invalidPayload("not JSON: " + lastError);
  const out = new JsonWriter();
  out.beginObject();
  out.key("payload");
  out.string(task.payload);
  out.endObject();
  return ok(out.toString());
}

function credentialOp(task: Task): Output {
  const payload = parse(task.payload);
  if (payload === null) return invalidPayload("not JSON");
  const op = payload.get("op");
  const name = payload.get("name");
  if (op === null || name === null) return invalidPayload("expected {op, name}");
  let r: CredentialResult;
  if (op.str == "get") r = getCredential(name.str);
  else if (op.str == "sign") r = sign(name.str, Uint8Array.wrap(String.UTF8.encode("message")));
  else if (op.str == "public_key") r = publicKey(name.str);
  else return invalidPayload("op is get, sign or public_key");
  if (!r.ok) return failed(r.errorKind + ": " + r.error);
  // Sizes only: a swarm that echoed secrets would be a leak, not a probe.
  return ok('{"value_units":' + r.value.length.toString() + ',"bytes":' + r.bytes.length.toString() + "}");
}

function fetchTask(task: Task): Output {
  const payload = parse(task.payload);
  if (payload === null) return invalidPayload("not JSON");
  const url = payload.get("url");
  if (url === null) return invalidPayload("expected {url}");
  const method = payload.get("method");
  const request = new Request(method === null ? "GET" : method.str, url.str);
  const headers = payload.get("headers");
  if (headers !== null) {
    for (let i = 0; i < headers.keys.length; i++) request.header(headers.keys[i], headers.items[i].str);
  }
  const body = payload.get("body");
  if (body !== null) request.text(body.str);
  const credential = payload.get("credential");
  if (credential !== null) request.credentialHeader("authorization", credential.str, "Bearer ");
  const response = fetch(request);
  if (!response.ok) return failed(response.errorKind + ": " + response.error);
  const out = new JsonWriter();
  out.beginObject();
  out.key("status");
  out.uint(response.status);
  out.key("headers");
  out.beginArray();
  for (let i = 0; i < response.headerNames.length; i++) {
    out.beginArray();
    out.string(response.headerNames[i]);
    out.string(response.headerValues[i]);
    out.endArray();
  }
  out.endArray();
  out.key("body");
  out.string(String.UTF8.decode(response.body.buffer));
  out.endObject();
  return ok(out.toString());
}

function credentialLoop(task: Task): Output {
  const payload = parse(task.payload);
  if (payload === null) return invalidPayload("not JSON");
  const name = payload.get("name");
  const n = payload.get("n");
  if (name === null || n === null) return invalidPayload("expected {name, n}");
  let units = 0;
  for (let i = 0; i < <i32>n.number; i++) {
    const r = getCredential(name.str);
    if (!r.ok) return failed(r.errorKind + ": " + r.error);
    units += r.value.length;
  }
  return ok('{"calls":' + (<i32>n.number).toString() + ',"units":' + units.toString() + "}");
}

function loneSurrogate(task: Task): Output {
  const broken = "a" + String.fromCharCode(0xd800) + "b";
  info("lone " + broken);
  return ok('{"text":"' + broken + '"}');
}

register("oob_write", oobWrite);
register("spin", spin);
register("memory_bomb", memoryBomb);
register("abort", hostileAbort);
register("credential", credential);
register("lift_string", liftStringTask);
register("lift_bytes", liftBytesTask);
register("case", caseTask);
register("realloc", reallocTask);
register("echo", echo);
register("credential_op", credentialOp);
register("fetch", fetchTask);
register("credential_loop", credentialLoop);
register("lone_surrogate", loneSurrogate);
