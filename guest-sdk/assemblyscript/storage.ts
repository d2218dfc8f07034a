// Objects the swarm keeps between tasks (the world `storing-swarm` or
// `swarm`; the contract's `[storage]` grants it):
//
//     const put = storageSet("counts/today", Uint8Array.wrap(String.UTF8.encode("3")));
//     if (!put.ok) return failed(put.message);   // "storage quota exceeded: ..."
//     const got = storageGet("counts/today");   // got.found, got.bytes

import { discriminant, listAt, release, returnArea, stringPtr, takeBytes, takeString, wellFormed } from "./abi";

@external("infrafabric:chassis/storage@0.1.0", "get")
declare function getImport(name: usize, nameLen: usize, ret: usize): void;
@external("infrafabric:chassis/storage@0.1.0", "set")
declare function setImport(name: usize, nameLen: usize, value: usize, valueLen: usize, ret: usize): void;
@external("infrafabric:chassis/storage@0.1.0", "delete")
declare function deleteImport(name: usize, nameLen: usize, ret: usize): void;
@external("infrafabric:chassis/storage@0.1.0", "exists")
declare function existsImport(name: usize, nameLen: usize, ret: usize): void;
@external("infrafabric:chassis/storage@0.1.0", "list-keys")
declare function listKeysImport(
  prefix: usize, prefixLen: usize,
  hasCursor: i32, cursor: usize, cursorLen: usize,
  limit: u32,
  ret: usize,
): void;
@external("infrafabric:chassis/storage@0.1.0", "stat")
declare function statImport(name: usize, nameLen: usize, ret: usize): void;
@external("infrafabric:chassis/storage@0.1.0", "usage")
declare function usageImport(ret: usize): void;

/** The `storage-error` cases, in the WIT's order. */
export const STORAGE_ERRORS: string[] = [
  "denied", "invalid-name", "quota-exceeded", "too-large", "rate-limited", "unavailable",
];

/** What each case is called in a message, as the Rust and JavaScript SDKs
 * word it. */
const STORAGE_WHAT: string[] = [
  "denied", "invalid name", "quota exceeded", "object too large", "rate limited", "unavailable",
];

/** A storage operation's answer. `ok`, and what the operation gives:
 * `found` and `bytes` (get), `found` (exists), `keys` and `cursor`
 * (list), `found`, `size` and `modifiedMs` (stat), the usage figures; or
 * the error's case (`errorKind`) and message. */
export class StorageResult {
  ok: bool = false;
  found: bool = false;
  bytes: Uint8Array = new Uint8Array(0);
  keys: string[] = [];
  cursor: string | null = null;
  size: u64 = 0;
  modifiedMs: u64 = 0;
  usedBytes: u64 = 0;
  objects: u64 = 0;
  maxBytes: u64 = 0;
  maxObjects: u64 = 0;
  maxObjectBytes: u64 = 0;
  readOnly: bool = false;
  errorKind: string = "";
  error: string = "";

  /** The refusal as a sentence, `storage <what>: <the host's reason>`
   * (what the Rust and JavaScript SDKs fail a task with). */
  get message(): string {
    const i = STORAGE_ERRORS.indexOf(this.errorKind);
    return "storage " + (i < 0 ? this.errorKind : STORAGE_WHAT[i]) + ": " + this.error;
  }
}

/** The result's case at `ret`; on an error, fill it in (its payload at
 * `payload`: 4, or 8 where the ok type holds a u64). */
function start(ret: usize, payload: usize): StorageResult {
  const out = new StorageResult();
  if (discriminant(ret, 2) == 0) {
    out.ok = true;
  } else {
    out.errorKind = STORAGE_ERRORS[discriminant(ret + payload, <u32>STORAGE_ERRORS.length)];
    out.error = takeString(load<u32>(ret + payload, 4), load<u32>(ret + payload, 8));
  }
  return out;
}

/** The object's bytes (`found` false when there is none). */
export function storageGet(name: string): StorageResult {
  const n = wellFormed(name);
  const ret = returnArea(16);
  getImport(stringPtr(n), n.length, ret);
  const out = start(ret, 4);
  if (out.ok && discriminant(ret + 4, 2) == 1) {
    out.found = true;
    out.bytes = takeBytes(load<u32>(ret, 8), load<u32>(ret, 12));
  }
  heap.free(ret);
  return out;
}

/** Write the object whole. */
export function storageSet(name: string, value: Uint8Array): StorageResult {
  const n = wellFormed(name);
  const ret = returnArea(16);
  setImport(stringPtr(n), n.length, value.dataStart, value.length, ret);
  const out = start(ret, 4);
  heap.free(ret);
  return out;
}

/** Remove the object (none there is not an error). */
export function storageDelete(name: string): StorageResult {
  const n = wellFormed(name);
  const ret = returnArea(16);
  deleteImport(stringPtr(n), n.length, ret);
  const out = start(ret, 4);
  heap.free(ret);
  return out;
}

/** Whether the object exists (`found`). */
export function storageExists(name: string): StorageResult {
  const n = wellFormed(name);
  const ret = returnArea(16);
  existsImport(stringPtr(n), n.length, ret);
  const out = start(ret, 4);
  if (out.ok) out.found = discriminant(ret + 4, 2) == 1;
  heap.free(ret);
  return out;
}

/** Names starting with `prefix`, at most `limit`, after `cursor` (null:
 * from the start); the next page's cursor in `cursor`. */
export function storageList(prefix: string, cursor: string | null, limit: u32): StorageResult {
  const ret = returnArea(24);
  const has = cursor !== null;
  const after = wellFormed(has ? <string>cursor : "");
  const from = wellFormed(prefix);
  listKeysImport(stringPtr(from), from.length, has ? 1 : 0, stringPtr(after), after.length, limit, ret);
  const out = start(ret, 4);
  if (out.ok) {
    const len = load<u32>(ret, 8);
    const list = listAt(load<u32>(ret, 4), len, 8, 4);
    for (let i: u32 = 0; i < len; i++) {
      const at = list + <usize>i * 8;
      out.keys.push(takeString(load<u32>(at), load<u32>(at, 4)));
    }
    release(list, len);
    if (discriminant(ret + 12, 2) == 1) out.cursor = takeString(load<u32>(ret, 16), load<u32>(ret, 20));
  }
  heap.free(ret);
  return out;
}

/** The object's size and time (`found` false when there is none). */
export function storageStat(name: string): StorageResult {
  const n = wellFormed(name);
  const ret = returnArea(32);
  statImport(stringPtr(n), n.length, ret);
  const out = start(ret, 8);
  if (out.ok && discriminant(ret + 8, 2) == 1) {
    out.found = true;
    out.size = load<u64>(ret, 16);
    out.modifiedMs = load<u64>(ret, 24);
  }
  heap.free(ret);
  return out;
}

/** The namespace's use of its quota. */
export function storageUsage(): StorageResult {
  const ret = returnArea(56);
  usageImport(ret);
  const out = start(ret, 8);
  if (out.ok) {
    out.usedBytes = load<u64>(ret, 8);
    out.objects = load<u64>(ret, 16);
    out.maxBytes = load<u64>(ret, 24);
    out.maxObjects = load<u64>(ret, 32);
    out.maxObjectBytes = load<u64>(ret, 40);
    out.readOnly = discriminant(ret + 48, 2) == 1;
  }
  heap.free(ret);
  return out;
}
