// Scoped credentials (the world `credentialed-swarm` or `swarm`; the
// contract's `security.scoped_credentials` decides which names):
//
//     const key = getCredential("api-key");
//     if (!key.ok) return failed(key.error);
//
// `sign` and `publicKey` use a signing key the host keeps: its private half
// never enters the guest.

import { discriminant, returnArea, stringPtr, takeBytes, takeString, wellFormed } from "./abi";

@external("infrafabric:chassis/credentials@0.1.0", "get")
declare function getImport(ptr: usize, len: usize, ret: usize): void;

@external("infrafabric:chassis/credentials@0.1.0", "sign")
declare function signImport(ptr: usize, len: usize, msg: usize, msgLen: usize, ret: usize): void;

@external("infrafabric:chassis/credentials@0.1.0", "public-key")
declare function publicKeyImport(ptr: usize, len: usize, ret: usize): void;

/** The `credential-error` cases, in the WIT's order. */
export const CREDENTIAL_ERRORS: string[] = ["denied", "not-found", "unsupported", "rate-limited"];

/** A credential operation's answer: `ok`, with `value` (get) or `bytes`
 * (sign, public key); or the error's case (`errorKind`, one of
 * `CREDENTIAL_ERRORS`) and the host's message (`error`). */
export class CredentialResult {
  ok: bool = false;
  value: string = "";
  bytes: Uint8Array = new Uint8Array(0);
  errorKind: string = "";
  error: string = "";
}

/** Read `result<T, credential-error>` at `ret`; `bytes`: T is list<u8>. */
function lift(ret: usize, bytes: bool): CredentialResult {
  const out = new CredentialResult();
  if (discriminant(ret, 2) == 0) {
    out.ok = true;
    if (bytes) out.bytes = takeBytes(load<u32>(ret, 4), load<u32>(ret, 8));
    else out.value = takeString(load<u32>(ret, 4), load<u32>(ret, 8));
  } else {
    const kind = discriminant(ret + 4, <u32>CREDENTIAL_ERRORS.length);
    out.errorKind = CREDENTIAL_ERRORS[kind];
    out.error = takeString(load<u32>(ret, 8), load<u32>(ret, 12));
  }
  heap.free(ret);
  return out;
}

/** The value of the scoped credential `name`. */
export function getCredential(name: string): CredentialResult {
  const n = wellFormed(name);
  const ret = returnArea(16);
  getImport(stringPtr(n), n.length, ret);
  return lift(ret, false);
}

/** `message` signed with the key `name` (Ed25519, on the host's side). */
export function sign(name: string, message: Uint8Array): CredentialResult {
  const n = wellFormed(name);
  const ret = returnArea(16);
  signImport(stringPtr(n), n.length, message.dataStart, message.length, ret);
  return lift(ret, true);
}

/** The public half of the signing key `name`. */
export function publicKey(name: string): CredentialResult {
  const n = wellFormed(name);
  const ret = returnArea(16);
  publicKeyImport(stringPtr(n), n.length, ret);
  return lift(ret, true);
}

