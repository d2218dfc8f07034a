// `notes-js`: the `notes` swarm (swarms/notes) in JavaScript, written with
// `chassis-storage.js` (guest-sdk/js): the same tasks, the same objects, the
// same results.
//
// - `count`: `{"counter": "visits"}` -> `{"counter", "value"}`: adds one to
//   the counter kept in `counters/<counter>` (8 bytes, little-endian);
// - `put`: `{"name", "note"}` -> `{"name", "bytes"}`;
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
// A refusal from the host (a name outside the namespace, the quota) is a
// `StorageError`, which fails the task with the host's reason.

import * as storage from "../../guest-sdk/js/chassis-storage.js";
import { InvalidPayload, TaskFailed, info, swarm } from "../../guest-sdk/js/chassis-swarm.js";

/** The payload's fields, each of the type given (`[type, default]`:
 * optional, and when the default is `undefined` also null; `null`: any JSON; `"integer"`: 0 to 2^32 - 1), and no others
 * (as `swarms/notes` refuses unknown fields). */
function fields(payload, kinds) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new InvalidPayload("expected an object");
  }
  const unknown = Object.keys(payload).filter((k) => !Object.hasOwn(kinds, k)).sort();
  if (unknown.length > 0) throw new InvalidPayload(`unknown field \`${unknown[0]}\``);
  return Object.entries(kinds).map(([name, kind]) => {
    let value;
    if (Array.isArray(kind)) {
      value = Object.hasOwn(payload, name) ? payload[name] : kind[1];
      // An optional field without a default may also be null.
      if (value === null && kind[1] === undefined) value = undefined;
      kind = kind[0];
    } else if (Object.hasOwn(payload, name)) {
      value = payload[name];
    } else {
      throw new InvalidPayload(`missing field \`${name}\``);
    }
    const ok =
      kind === null ||
      value === undefined ||
      (kind === "integer"
        ? Number.isInteger(value) && value >= 0 && value <= MAX_U32
        : typeof value === kind);
    if (!ok) throw new InvalidPayload(`\`${name}\` has the wrong type`);
    return value;
  });
}

const MAX_U32 = 0xffffffff;

const filled = (i) => `fill/${i % 16}`;

export const task = swarm({
  count(payload) {
    const [counter] = fields(payload, { counter: "string" });
    const name = `counters/${counter}`;
    const bytes = storage.get(name);
    let value = 1n;
    if (bytes !== undefined) {
      if (bytes.length !== 8) throw new TaskFailed(`${name} is not a counter`);
      value = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true) + 1n;
    }
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, value, true);
    // A JSON number holds integers exactly up to 2^53 only.
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new TaskFailed(`${name} is over ${Number.MAX_SAFE_INTEGER}, more than a JavaScript number holds exactly`);
    }
    storage.set(name, out);
    info(`${name} = ${value}`);
    return { counter, value: Number(value) };
  },
  put(payload) {
    const [name, note] = fields(payload, { name: "string", note: null });
    return { name, bytes: storage.setJson(name, note) };
  },
  get(payload) {
    const [name] = fields(payload, { name: "string" });
    return { name, note: storage.getJson(name) ?? null };
  },
  list(payload) {
    const [prefix] = fields(payload, { prefix: ["string", ""] });
    return { names: storage.listKeys(prefix) };
  },
  stat(payload) {
    const [name] = fields(payload, { name: "string" });
    const exists = storage.exists(name);
    const info = storage.stat(name);
    return { name, exists, size: info === undefined ? null : info.size };
  },
  page(payload) {
    const [prefix, cursor, limit] = fields(payload, {
      prefix: ["string", ""],
      cursor: ["string", undefined],
      limit: "integer",
    });
    const page = storage.listPage(prefix, cursor, limit);
    return { names: page.keys, cursor: page.cursor ?? null };
  },
  delete(payload) {
    const [name] = fields(payload, { name: "string" });
    storage.remove(name);
    return { deleted: name };
  },
  usage() {
    const u = storage.usage();
    return {
      bytes: u.bytes,
      objects: u.objects,
      max_bytes: u.maxBytes,
      max_objects: u.maxObjects,
      max_object_bytes: u.maxObjectBytes,
      read_only: u.readOnly,
    };
  },
  fill(payload) {
    const [n, size] = fields(payload, { n: "integer", bytes: ["integer", 0] });
    const value = new Uint8Array(size).fill(7);
    for (let i = 0; i < n; i++) storage.set(filled(i), value);
    return { writes: n };
  },
  scan(payload) {
    const [n] = fields(payload, { n: "integer", bytes: ["integer", 0] });
    let total = 0;
    for (let i = 0; i < n; i++) total += storage.get(filled(i))?.length ?? 0;
    return { reads: n, bytes: total };
  },
});
