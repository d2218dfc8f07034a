// `notes-as`: the `notes` swarm (swarms/notes) in AssemblyScript, written
// with the SDK's `storage.ts` (guest-sdk/assemblyscript): the same tasks,
// the same objects, the same results, and the same storage calls.
//
// - `count`: `{"counter": "visits"}` -> `{"counter", "value"}`: adds one to
//   the counter kept in `counters/<counter>` (8 bytes, little-endian);
// - `put`: `{"name", "note"}` -> `{"name", "bytes"}` (the note kept as the
//   JSON text it came in);
// - `get`: `{"name"}` -> `{"name", "note"}` (`note` is null when there is none);
// - `list`: `{"prefix"}` -> `{"names"}`;
// - `stat`: `{"name"}` -> `{"name", "exists", "size"}` (`size` null when
//   there is none);
// - `page`: `{"prefix", "cursor", "limit"}` -> one page `{"names",
//   "cursor"}` (`cursor` null on the last);
// - `delete`: `{"name"}` -> `{"deleted"}`;
// - `usage`: `{}` -> the namespace's bytes and objects against its quota;
// - `fill`: `{"n", "bytes"}` -> N writes over `fill/0`..`fill/15`, and
//   `scan`: `{"n"}` -> N reads of them.
//
// A refusal from the host (a name outside the namespace, the quota) fails
// the task with `storage <what>: <the host's reason>`, as in Rust.

import {
  JsonValue,
  KIND_NULL,
  KIND_NUMBER,
  KIND_OBJECT,
  KIND_STRING,
  lastError,
  parse,
  quote,
} from "../chassis/json";
import {
  StorageResult,
  storageDelete,
  storageExists,
  storageGet,
  storageList,
  storageSet,
  storageStat,
  storageUsage,
} from "../chassis/storage";
import { Output, Task, failed, info, invalidPayload, ok, register } from "../chassis/swarm";

/** A payload read against the fields a task takes. */
class Fields {
  error: Output | null = null;
  constructor(public payload: JsonValue | null) {}

  /** The field `name` (null when absent, or of the wrong `kind`: then
   * `error` is set). `optional`: absent (or null) is fine. */
  field(name: string, kind: i32, optional: bool): JsonValue | null {
    const payload = this.payload;
    if (payload === null || this.error !== null) return null;
    const v = payload.get(name);
    if (v === null || (optional && v.kind == KIND_NULL)) {
      if (!optional) this.error = invalidPayload("missing field `" + name + "`");
      return null;
    }
    if (kind >= 0 && v.kind != kind) {
      this.error = invalidPayload("`" + name + "` has the wrong type");
      return null;
    }
    if (kind == KIND_NUMBER && (v.number < 0 || v.number > 4294967295 || Math.floor(v.number) != v.number)) {
      this.error = invalidPayload("`" + name + "` has the wrong type");
      return null;
    }
    return v;
  }

  string(name: string, fallback: string | null): string {
    const v = this.field(name, KIND_STRING, fallback !== null);
    if (v !== null) return v.str;
    return fallback === null ? "" : fallback;
  }

  integer(name: string, optional: bool): u32 {
    const v = this.field(name, KIND_NUMBER, optional);
    return v === null ? 0 : <u32>v.number;
  }
}

/** The payload as an object with only the `known` fields. */
function fields(task: Task, known: string[]): Fields {
  const payload = parse(task.payload);
  if (payload === null) {
    const f = new Fields(null);
    f.error = invalidPayload("not JSON: " + lastError);
    return f;
  }
  const f = new Fields(payload);
  if (payload.kind != KIND_OBJECT) {
    f.error = invalidPayload("expected an object");
    return f;
  }
  // The first unknown field in byte order, as the other SDKs name it.
  let unknown: string | null = null;
  for (let i = 0; i < payload.keys.length; i++) {
    const key = payload.keys[i];
    if (!known.includes(key) && (unknown === null || key < <string>unknown)) unknown = key;
  }
  if (unknown !== null) f.error = invalidPayload("unknown field `" + unknown + "`");
  return f;
}

function refused(r: StorageResult): Output {
  return failed(r.message);
}

function filled(i: u32): string {
  return "fill/" + (i % 16).toString();
}

function count(task: Task): Output {
  const f = fields(task, ["counter"]);
  const counter = f.string("counter", null);
  if (f.error !== null) return <Output>f.error;
  const name = "counters/" + counter;
  const got = storageGet(name);
  if (!got.ok) return refused(got);
  let value: u64 = 1;
  if (got.found) {
    if (got.bytes.length != 8) return failed(name + " is not a counter");
    value = load<u64>(got.bytes.dataStart) + 1;
  }
  const out = new Uint8Array(8);
  store<u64>(out.dataStart, value);
  const put = storageSet(name, out);
  if (!put.ok) return refused(put);
  info(name + " = " + value.toString());
  return ok('{"counter":' + quote(counter) + ',"value":' + value.toString() + "}");
}

function put(task: Task): Output {
  const f = fields(task, ["name", "note"]);
  const name = f.string("name", null);
  const note = f.field("note", -1, false);
  if (f.error !== null) return <Output>f.error;
  // The note as it came: the host's compact JSON.
  const text = task.payload.substring((<JsonValue>note).start, (<JsonValue>note).end);
  const bytes = Uint8Array.wrap(String.UTF8.encode(text));
  const r = storageSet(name, bytes);
  if (!r.ok) return refused(r);
  return ok('{"name":' + quote(name) + ',"bytes":' + bytes.length.toString() + "}");
}

function get(task: Task): Output {
  const f = fields(task, ["name"]);
  const name = f.string("name", null);
  if (f.error !== null) return <Output>f.error;
  const r = storageGet(name);
  if (!r.ok) return refused(r);
  let note = "null";
  if (r.found) {
    note = String.UTF8.decode(r.bytes.buffer);
    if (parse(note) === null) {
      return failed("storage JSON: " + name + " does not hold JSON: " + lastError);
    }
  }
  return ok('{"name":' + quote(name) + ',"note":' + note + "}");
}

/** Every name starting with `prefix`, page by page; null when refused
 * (`refusal` then holds why). */
class Listing {
  names: string[] = [];
  refusal: StorageResult | null = null;
}

function listAll(prefix: string): Listing {
  const out = new Listing();
  let cursor: string | null = null;
  do {
    const page = storageList(prefix, cursor, 0);
    if (!page.ok) {
      out.refusal = page;
      return out;
    }
    for (let i = 0; i < page.keys.length; i++) out.names.push(page.keys[i]);
    cursor = page.cursor;
  } while (cursor !== null);
  return out;
}

function names(list: string[]): string {
  const parts = new Array<string>();
  for (let i = 0; i < list.length; i++) parts.push(quote(list[i]));
  return "[" + parts.join(",") + "]";
}

function list(task: Task): Output {
  const f = fields(task, ["prefix"]);
  const prefix = f.string("prefix", "");
  if (f.error !== null) return <Output>f.error;
  const all = listAll(prefix);
  if (all.refusal !== null) return refused(<StorageResult>all.refusal);
  return ok('{"names":' + names(all.names) + "}");
}

function stat(task: Task): Output {
  const f = fields(task, ["name"]);
  const name = f.string("name", null);
  if (f.error !== null) return <Output>f.error;
  const exists = storageExists(name);
  if (!exists.ok) return refused(exists);
  const info = storageStat(name);
  if (!info.ok) return refused(info);
  const size = info.found ? info.size.toString() : "null";
  return ok(
    '{"name":' + quote(name) + ',"exists":' + (exists.found ? "true" : "false") + ',"size":' + size + "}",
  );
}

function page(task: Task): Output {
  const f = fields(task, ["prefix", "cursor", "limit"]);
  const prefix = f.string("prefix", "");
  const cursorValue = f.field("cursor", KIND_STRING, true);
  const limit = f.integer("limit", false);
  if (f.error !== null) return <Output>f.error;
  const cursor: string | null = cursorValue === null ? null : cursorValue.str;
  const r = storageList(prefix, cursor, limit);
  if (!r.ok) return refused(r);
  const next = r.cursor;
  return ok('{"names":' + names(r.keys) + ',"cursor":' + (next === null ? "null" : quote(next)) + "}");
}

function remove(task: Task): Output {
  const f = fields(task, ["name"]);
  const name = f.string("name", null);
  if (f.error !== null) return <Output>f.error;
  const r = storageDelete(name);
  if (!r.ok) return refused(r);
  return ok('{"deleted":' + quote(name) + "}");
}

function usage(task: Task): Output {
  const f = fields(task, []);
  if (f.error !== null) return <Output>f.error;
  const u = storageUsage();
  if (!u.ok) return refused(u);
  return ok(
    '{"bytes":' + u.usedBytes.toString() +
      ',"objects":' + u.objects.toString() +
      ',"max_bytes":' + u.maxBytes.toString() +
      ',"max_objects":' + u.maxObjects.toString() +
      ',"max_object_bytes":' + u.maxObjectBytes.toString() +
      ',"read_only":' + (u.readOnly ? "true" : "false") + "}",
  );
}

function fill(task: Task): Output {
  const f = fields(task, ["n", "bytes"]);
  const n = f.integer("n", false);
  const size = f.integer("bytes", true);
  if (f.error !== null) return <Output>f.error;
  const value = new Uint8Array(<i32>size);
  value.fill(7);
  for (let i: u32 = 0; i < n; i++) {
    const r = storageSet(filled(i), value);
    if (!r.ok) return refused(r);
  }
  return ok('{"writes":' + n.toString() + "}");
}

function scan(task: Task): Output {
  const f = fields(task, ["n", "bytes"]);
  const n = f.integer("n", false);
  f.integer("bytes", true);
  if (f.error !== null) return <Output>f.error;
  let total: u64 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const r = storageGet(filled(i));
    if (!r.ok) return refused(r);
    if (r.found) total += <u64>r.bytes.length;
  }
  return ok('{"reads":' + n.toString() + ',"bytes":' + total.toString() + "}");
}

register("count", count);
register("put", put);
register("get", get);
register("list", list);
register("stat", stat);
register("page", page);
register("delete", remove);
register("usage", usage);
register("fill", fill);
register("scan", scan);
