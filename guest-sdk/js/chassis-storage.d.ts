// `chassis-storage.d.ts`: the types of `chassis-storage.js`, for swarms
// written in TypeScript whose world has the `storage` import
// (`storing-swarm` or `swarm`): `chassis build` writes it for those
// worlds only, so a swarm of another world that imports it fails to
// type-check, naming it.

import { TaskFailed } from "./chassis-swarm.js";

/** Why the host refused or failed a storage operation. */
export class StorageError extends TaskFailed {
  /** The WIT variant (`denied`, `invalid-name`, ...), or `json`. */
  readonly kind: string;
  /** The host's reason alone. */
  readonly reason: string;
}
/** No storage granted, or a write under `read_only`. */
export class Denied extends StorageError {}
/** Not an object name (or one outside the namespace). */
export class InvalidName extends StorageError {}
/** The write would go over the namespace's bytes or object count. */
export class QuotaExceeded extends StorageError {}
/** The object is over `max_object_bytes`. */
export class TooLarge extends StorageError {}
/** The swarm is over its `max_api_calls_per_second`. */
export class RateLimited extends StorageError {}
/** The host's store failed, or did not answer by the task's deadline. */
export class Unavailable extends StorageError {}
/** The object is not JSON, or a value did not serialize. */
export class JsonError extends StorageError {}

/** What `set` writes: a string as UTF-8, or bytes. */
export type Bytes = string | ArrayBufferView | ArrayBuffer;

/** The object's bytes, or `undefined` when there is none. */
export function get(name: string): Uint8Array | undefined;
/** Write the object whole, replacing any before it. */
export function set(name: string, value: Bytes): void;
/** The object parsed as JSON, or `undefined` when there is none. */
export function getJson(name: string): unknown;
/** Write `value` as compact JSON; the bytes written. */
export function setJson(name: string, value: unknown): number;
/** Remove the object (none of that name is not an error). */
export function remove(name: string): void;
export { remove as delete };
/** Whether the object exists. */
export function exists(name: string): boolean;
/** One page of names starting with `prefix`, after `cursor`. */
export function listPage(
  prefix?: string,
  cursor?: string,
  limit?: number,
): { keys: string[]; cursor: string | undefined };
/** Every name starting with `prefix`, in byte order. */
export function listKeys(prefix?: string): string[];
/** The object's size and time of change, or `undefined`. */
export function stat(name: string): { size: number; modifiedMs: number } | undefined;
/** The namespace's use of its quota. */
export function usage(): {
  bytes: number;
  objects: number;
  maxBytes: number;
  maxObjects: number;
  maxObjectBytes: number;
  readOnly: boolean;
};
