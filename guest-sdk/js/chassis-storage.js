// `chassis-storage.js`: the `storage` import for JavaScript swarms.
//
// The JavaScript counterpart of the Rust SDK's `chassis_sdk::storage`:
// objects (bytes) kept between tasks in the swarm's own namespace of the
// host's store, within the quota its contract sets (`[storage]`). The swarm
// must target the `storing-swarm` world (or `swarm`): `"world":
// "storing-swarm"` under `chassis` in its `package.json`.
//
//     import { getJson, setJson } from "../../guest-sdk/js/chassis-storage.js";
//
//     export const task = swarm({
//       count() {
//         const n = (getJson("counters/visits") ?? 0) + 1;
//         setJson("counters/visits", n);
//         return { value: n };
//       },
//     });
//
// Every function throws a `StorageError` when the host refuses or fails the
// operation. It is a `TaskFailed`: a handler that lets it through fails the
// task with the sentence `storage <what>: <the host's reason>`, as the Rust
// SDK's `?` does. Test `e instanceof QuotaExceeded` (or `e.kind`) to act on
// one reason.
//
// Names are 1 to 256 bytes of ASCII letters, digits and `-` `_` `.`, in
// `/`-separated segments; the host checks them, and one that tries to leave
// the namespace (`..`, a leading `/`, ...) is refused and recorded as a
// security violation. Sizes and times come as numbers (exact below 2^53).

import * as store from "infrafabric:chassis/storage@0.1.0";
import { TaskFailed } from "./chassis-swarm.js";

/** Why the host refused or failed a storage operation: `message` is
 * `storage <what>: <reason>`, `reason` the host's reason alone, `kind` the
 * WIT variant (`denied`, `invalid-name`, ...; `json` for `getJson` and
 * `setJson`). */
export class StorageError extends TaskFailed {
  constructor(kind, what, reason) {
    super(`storage ${what}: ${reason}`);
    this.name = "StorageError";
    this.kind = kind;
    this.reason = String(reason);
  }
}

/** No storage granted, or a write under `read_only`. */
export class Denied extends StorageError {
  constructor(reason) {
    super("denied", "denied", reason);
    this.name = "Denied";
  }
}

/** Not an object name (or one outside the namespace). */
export class InvalidName extends StorageError {
  constructor(reason) {
    super("invalid-name", "invalid name", reason);
    this.name = "InvalidName";
  }
}

/** The write would go over the namespace's bytes or object count. */
export class QuotaExceeded extends StorageError {
  constructor(reason) {
    super("quota-exceeded", "quota exceeded", reason);
    this.name = "QuotaExceeded";
  }
}

/** The object is over `max_object_bytes`. */
export class TooLarge extends StorageError {
  constructor(reason) {
    super("too-large", "object too large", reason);
    this.name = "TooLarge";
  }
}

/** The swarm is over its `max_api_calls_per_second`. */
export class RateLimited extends StorageError {
  constructor(reason) {
    super("rate-limited", "rate limited", reason);
    this.name = "RateLimited";
  }
}

/** The host's store failed, or did not answer by the task's deadline (a
 * write so answered may or may not have been made). */
export class Unavailable extends StorageError {
  constructor(reason) {
    super("unavailable", "unavailable", reason);
    this.name = "Unavailable";
  }
}

/** The object is not JSON, or a value did not serialize; the store is fine. */
export class JsonError extends StorageError {
  constructor(reason) {
    super("json", "JSON", reason);
    this.name = "JsonError";
  }
}

const ERRORS = {
  denied: Denied,
  "invalid-name": InvalidName,
  "quota-exceeded": QuotaExceeded,
  "too-large": TooLarge,
  "rate-limited": RateLimited,
  unavailable: Unavailable,
};

/** Call an import, turning its error variant into a `StorageError`. */
function call(operation, ...args) {
  try {
    return operation(...args);
  } catch (e) {
    // The variant `{ tag, val }`, thrown as is or as an error's `payload`.
    const variant = e !== null && typeof e === "object" && "payload" in e ? e.payload : e;
    const kind = variant !== null && typeof variant === "object" ? ERRORS[variant.tag] : undefined;
    if (kind === undefined) throw e;
    throw new kind(variant.val);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The object's bytes (a `Uint8Array`), or `undefined` when there is none. */
export function get(name) {
  return call(store.get, name) ?? undefined;
}

/** The bytes of `value`: a string as UTF-8, any typed array or `DataView`
 * as its bytes, an `ArrayBuffer` whole. */
function bytesOf(name, value) {
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`storage set(${JSON.stringify(name)}): expected a string, a typed array or an ArrayBuffer`);
}

/** Write the object whole (a string as UTF-8, a typed array, a `DataView`
 * or an `ArrayBuffer`), replacing any before it. */
export function set(name, value) {
  call(store.set, name, bytesOf(name, value));
}

/** The object parsed as JSON, or `undefined` when there is none. */
export function getJson(name) {
  const bytes = get(name);
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new JsonError(`${name} does not hold JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Refuses what JSON cannot hold instead of writing `null` for it. */
function strict(key, value) {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`${value} is not a JSON number`);
  }
  if (typeof value === "bigint") throw new TypeError("a BigInt is not a JSON number");
  return value;
}

/** Write `value` as compact JSON; the bytes written.
 *
 * Numbers are spelled as JavaScript spells them: a value read back is the
 * same in every language, except integers past 2^53, which a JavaScript
 * number cannot hold; the bytes may differ from another language's (`1` for
 * Rust's and Python's `1.0`). Keys keep their order, but an object's
 * integer-like keys come first, as JavaScript orders them. */
export function setJson(name, value) {
  let text;
  try {
    text = JSON.stringify(value, strict);
  } catch (e) {
    throw new JsonError(`serializing ${name}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (text === undefined) throw new JsonError(`serializing ${name}: ${typeof value} is not JSON`);
  const bytes = encoder.encode(text);
  set(name, bytes);
  return bytes.length;
}

/** Remove the object (none of that name is not an error). */
export function remove(name) {
  call(store["delete"], name);
}

/** Whether the object exists. */
export function exists(name) {
  return call(store.exists, name);
}

/** One page of names starting with `prefix`, after `cursor`: at most
 * `limit` (0: the host's most, 1,000). `{ keys, cursor }`; `cursor` is
 * `undefined` on the last page. */
export function listPage(prefix = "", cursor = undefined, limit = 0) {
  const page = call(store.listKeys, prefix, cursor, limit);
  return { keys: [...page.keys], cursor: page.cursor ?? undefined };
}

/** Every name starting with `prefix` (empty: all), in byte order, fetched
 * page by page. */
export function listKeys(prefix = "") {
  const names = [];
  let cursor;
  do {
    const page = listPage(prefix, cursor);
    names.push(...page.keys);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return names;
}

/** `{ size, modifiedMs }` of the object, or `undefined`. */
export function stat(name) {
  const info = call(store.stat, name);
  if (info === undefined || info === null) return undefined;
  return { size: Number(info.size), modifiedMs: Number(info.modifiedMs) };
}

/** The namespace's use of its quota: `{ bytes, objects, maxBytes,
 * maxObjects, maxObjectBytes, readOnly }`. */
export function usage() {
  const u = call(store.usage);
  return {
    bytes: Number(u.bytes),
    objects: Number(u.objects),
    maxBytes: Number(u.maxBytes),
    maxObjects: Number(u.maxObjects),
    maxObjectBytes: Number(u.maxObjectBytes),
    readOnly: u.readOnly,
  };
}

// `delete`, the WIT operation's name, for `import { delete as del }`.
export { remove as delete };
