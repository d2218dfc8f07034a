// The canonical-ABI glue of the chassis worlds for AssemblyScript: what
// wit-bindgen would generate, written once. `chassis build` compiles it with
// the swarm and embeds the world with UTF-16 strings (AssemblyScript's own),
// so a string crosses as (pointer, length in UTF-16 code units).
//
// - Exports: `describe` and `execute` (renamed by `chassis build` to the
//   component model's `infrafabric:chassis/task@0.1.0#...`), `cabi_realloc`
//   (where the host puts what it hands the guest), `cabi_post_execute`.
// - Everything the host writes into guest memory (arguments of `execute`,
//   results of imports) is read through `liftString`, `liftBytes` and
//   `discriminant`, which check bounds, alignment and cases and stop the
//   task with a message rather than read outside what was given; what the
//   host allocated for it is freed once read (`takeString`, `release`).
// - Text handed to the host is made well-formed first (`wellFormed`: an
//   unpaired surrogate becomes U+FFFD), since the host cannot take one.
// - Results handed back are copied into memory the garbage collector does
//   not own (`heap.alloc`), so nothing moves or is freed while the host
//   reads them.

import { Handler, Output, Task, handlerFor, taskTypes } from "./swarm";

// ---- the log import (every world has it) ---------------------------------

@external("infrafabric:chassis/log@0.1.0", "log")
declare function logImport(level: i32, ptr: usize, len: usize): void;

/** The index of the first unpaired surrogate in `s` at or after `from`,
 * or -1. */
function unpaired(s: string, from: i32): i32 {
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
}

/** `s` with each unpaired surrogate replaced by U+FFFD: the host takes
 * only well-formed text (it would end the task over one). `s` itself when
 * it has none. Concatenation, not an array: the abort handler comes
 * through here, and must not depend on the array code it may be
 * reporting on. */
export function wellFormed(s: string): string {
  let at = unpaired(s, 0);
  if (at < 0) return s;
  let out = "";
  let run = 0;
  while (at >= 0) {
    out += s.substring(run, at) + "\ufffd";
    run = at + 1;
    at = unpaired(s, run);
  }
  return out + s.substring(run);
}

/** One line in the host's log: `level` 0 trace .. 4 error. */
export function logLine(level: i32, message: string): void {
  const text = wellFormed(message);
  logImport(level, changetype<usize>(text), <usize>text.length);
}

/** The AssemblyScript `abort` (a failed assertion, an index out of range):
 * said in the log, then the task stops with a trap. */
export function chassisAbort(
  message: string | null,
  fileName: string | null,
  line: u32,
  column: u32,
): void {
  let text = "abort: " + (message === null ? "(no message)" : message);
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  logLine(4, text);
  unreachable();
}

/** Stop the task: the host's answer was not one the ABI allows. */
export function abiViolation(what: string): void {
  logLine(4, "canonical ABI: " + what);
  unreachable();
}

// ---- reading what the host wrote ---------------------------------------------

/** Bytes of linear memory. */
function memoryBytes(): u64 {
  return (<u64>memory.size()) << 16;
}

/** Whether [ptr, ptr + bytes) lies in linear memory. */
export function inBounds(ptr: usize, bytes: u64): bool {
  return <u64>ptr + bytes <= memoryBytes();
}

/** The string of `len` UTF-16 code units at `ptr`, checked. */
export function liftString(ptr: usize, len: usize): string {
  if ((ptr & 1) != 0) abiViolation("a string at an odd address");
  if (len > 0x7fffffff || !inBounds(ptr, (<u64>len) << 1)) {
    abiViolation("a string outside linear memory");
  }
  return String.UTF16.decodeUnsafe(ptr, len << 1);
}

/** The `len` bytes at `ptr`, checked, copied. */
export function liftBytes(ptr: usize, len: usize): Uint8Array {
  if (len > 0x7fffffff || !inBounds(ptr, <u64>len)) {
    abiViolation("a byte list outside linear memory");
  }
  const out = new Uint8Array(<i32>len);
  memory.copy(out.dataStart, ptr, len);
  return out;
}

/** Give back memory the host filled through `cabi_realloc` once it has
 * been lifted (a zero-length string or list was given no memory). */
export function release(ptr: usize, len: usize): void {
  if (len != 0) heap.free(ptr);
}

/** `liftString`, then the host's copy released. */
export function takeString(ptr: usize, len: usize): string {
  const s = liftString(ptr, len);
  release(ptr, len);
  return s;
}

/** `liftBytes`, then the host's copy released. */
export function takeBytes(ptr: usize, len: usize): Uint8Array {
  const b = liftBytes(ptr, len);
  release(ptr, len);
  return b;
}

/** The case number at `ptr`, checked against the cases there are. */
export function discriminant(ptr: usize, cases: u32): u32 {
  if (!inBounds(ptr, 1)) abiViolation("a case outside linear memory");
  const value = <u32>load<u8>(ptr);
  if (value >= cases) abiViolation("case " + value.toString() + " of " + cases.toString());
  return value;
}

/** A list's element pointer, checked for `elementBytes` each and `align`. */
export function listAt(ptr: usize, len: usize, elementBytes: u32, align: u32): usize {
  if ((ptr & (<usize>align - 1)) != 0) abiViolation("a list at a misaligned address");
  if (!inBounds(ptr, <u64>len * <u64>elementBytes)) abiViolation("a list outside linear memory");
  return ptr;
}

/** Scratch space for an import's result, `size` bytes aligned to 8
 * (`heap.free` it once read). */
export function returnArea(size: usize): usize {
  return heap.alloc(size);
}

// ---- handing back -------------------------------------------------------------

/** A copy of `s` (made well-formed) outside the collector's memory:
 * (pointer, code units). */
function lowerString(text: string, at: usize): void {
  const s = wellFormed(text);
  const bytes = <usize>s.length << 1;
  const copy = heap.alloc(bytes);
  memory.copy(copy, changetype<usize>(s), bytes);
  store<u32>(at, <u32>copy);
  store<u32>(at, <u32>s.length, 4);
}

/** The pointer of a string handed to an import as it is (the caller keeps
 * it reachable for the call, and passes its length: make it well-formed
 * first with `wellFormed`). */
export function stringPtr(s: string): usize {
  return changetype<usize>(s);
}

// ---- exports --------------------------------------------------------------------

/** `cabi_realloc`: memory for the host to write into. */
export function cabi_realloc(old: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (align == 0 || (align & (align - 1)) != 0 || align > 16) {
    abiViolation("cabi_realloc with alignment " + align.toString());
  }
  if (old == 0) return heap.alloc(newSize);
  if (!inBounds(old, <u64>oldSize)) abiViolation("cabi_realloc of memory outside linear memory");
  return heap.realloc(old, newSize);
}

/** `describe: func() -> list<string>`. */
export function describe(): usize {
  const types = taskTypes();
  const list = heap.alloc(<usize>types.length * 8);
  for (let i = 0; i < types.length; i++) {
    lowerString(types[i], list + <usize>i * 8);
  }
  const ret = heap.alloc(8);
  store<u32>(ret, <u32>list);
  store<u32>(ret, <u32>types.length, 4);
  return ret;
}

/** `execute: func(request: task-request) -> result<string, task-error>`. */
export function execute(
  idPtr: usize,
  idLen: usize,
  typePtr: usize,
  typeLen: usize,
  payloadPtr: usize,
  payloadLen: usize,
): usize {
  const task = new Task(
    takeString(idPtr, idLen),
    takeString(typePtr, typeLen),
    takeString(payloadPtr, payloadLen),
  );
  const ret = heap.alloc(16);
  const handler: Handler | null = handlerFor(task.type);
  if (handler === null) {
    store<u8>(ret, 1);
    store<u8>(ret, 0, 4);
    lowerString(task.type, ret + 8);
    return ret;
  }
  const output: Output = handler(task);
  if (output.kind == 0) {
    store<u8>(ret, 0);
    lowerString(output.text, ret + 4);
  } else {
    // invalid-payload (1), or failed (2) for any other kind.
    store<u8>(ret, 1);
    store<u8>(ret, output.kind == 1 ? 1 : 2, 4);
    lowerString(output.text, ret + 8);
  }
  return ret;
}

/** After the host has read `execute`'s result: nothing to free (the
 * instance is discarded after its task). */
export function cabi_post_execute(ret: usize): void {}
