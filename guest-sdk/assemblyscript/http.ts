// Outbound HTTP through the host (the world `swarm`; the contract's
// `network_access` and `allowed_endpoints` decide where):
//
//     const request = new Request("GET", "https://api.example.com/v1/items");
//     request.header("accept", "application/json");
//     const response = fetch(request);
//     if (!response.ok) return failed(response.errorKind + ": " + response.error);
//     const text = String.UTF8.decode(response.body.buffer);
//
// A credential can be sent as a header without the guest seeing it:
// `request.credentialHeader("authorization", "api-token", "Bearer ")`.

import { discriminant, listAt, release, returnArea, stringPtr, takeBytes, takeString, wellFormed } from "./abi";

@external("infrafabric:chassis/http-proxy@0.1.0", "fetch")
declare function fetchImport(
  method: usize, methodLen: usize,
  url: usize, urlLen: usize,
  headers: usize, headersLen: usize,
  body: usize, bodyLen: usize,
  hasCredential: i32,
  header: usize, headerLen: usize,
  credential: usize, credentialLen: usize,
  prefix: usize, prefixLen: usize,
  ret: usize,
): void;

/** The `proxy-error` cases, in the WIT's order. */
export const PROXY_ERRORS: string[] = [
  "denied", "invalid-request", "too-large", "timeout", "rate-limited", "network",
];

/** An outbound request. */
export class Request {
  headerNames: string[] = [];
  headerValues: string[] = [];
  body: Uint8Array = new Uint8Array(0);
  credentialHeaderName: string | null = null;
  credentialName: string = "";
  credentialPrefix: string = "";

  constructor(public method: string, public url: string) {}

  /** Add a header. */
  header(name: string, value: string): Request {
    this.headerNames.push(name);
    this.headerValues.push(value);
    return this;
  }

  /** Have the host send the credential `credential` as header `header`,
   * after `prefix` (e.g. "Bearer "). */
  credentialHeader(header: string, credential: string, prefix: string): Request {
    this.credentialHeaderName = header;
    this.credentialName = credential;
    this.credentialPrefix = prefix;
    return this;
  }

  /** The body, as UTF-8 text. */
  text(body: string): Request {
    this.body = Uint8Array.wrap(String.UTF8.encode(body));
    return this;
  }
}

/** A response, or why there is none: `ok` and `status`, `headers` and
 * `body`; or the error's case (`errorKind`, one of `PROXY_ERRORS`) and
 * message. */
export class Response {
  ok: bool = false;
  status: u16 = 0;
  headerNames: string[] = [];
  headerValues: string[] = [];
  body: Uint8Array = new Uint8Array(0);
  errorKind: string = "";
  error: string = "";
}

/** Send `request` through the host's proxy and wait for the answer. */
export function fetch(request: Request): Response {
  const count = request.headerNames.length;
  // list<header>: (name, value) as two (pointer, length) pairs each; the
  // strings are kept reachable in `texts` for the call.
  const texts = new Array<string>();
  const headers = heap.alloc(<usize>count * 16);
  for (let i = 0; i < count; i++) {
    const at = headers + <usize>i * 16;
    const name = wellFormed(request.headerNames[i]);
    const value = wellFormed(request.headerValues[i]);
    texts.push(name);
    texts.push(value);
    store<u32>(at, <u32>stringPtr(name));
    store<u32>(at, <u32>name.length, 4);
    store<u32>(at, <u32>stringPtr(value), 8);
    store<u32>(at, <u32>value.length, 12);
  }
  const ret = returnArea(24);
  const credentialHeader = request.credentialHeaderName;
  const has = credentialHeader !== null;
  const header = wellFormed(has ? <string>credentialHeader : "");
  const method = wellFormed(request.method);
  const url = wellFormed(request.url);
  const credential = wellFormed(request.credentialName);
  const prefix = wellFormed(request.credentialPrefix);
  fetchImport(
    stringPtr(method), method.length,
    stringPtr(url), url.length,
    headers, count,
    request.body.dataStart, request.body.length,
    has ? 1 : 0,
    stringPtr(header), header.length,
    stringPtr(credential), credential.length,
    stringPtr(prefix), prefix.length,
    ret,
  );
  heap.free(headers);
  const out = new Response();
  if (discriminant(ret, 2) == 0) {
    out.ok = true;
    out.status = load<u16>(ret, 4);
    const len = load<u32>(ret, 12);
    const list = listAt(load<u32>(ret, 8), len, 16, 4);
    for (let i: u32 = 0; i < len; i++) {
      const at = list + <usize>i * 16;
      out.headerNames.push(takeString(load<u32>(at), load<u32>(at, 4)));
      out.headerValues.push(takeString(load<u32>(at, 8), load<u32>(at, 12)));
    }
    release(list, len);
    out.body = takeBytes(load<u32>(ret, 16), load<u32>(ret, 20));
  } else {
    out.errorKind = PROXY_ERRORS[discriminant(ret + 4, <u32>PROXY_ERRORS.length)];
    out.error = takeString(load<u32>(ret, 8), load<u32>(ret, 12));
  }
  heap.free(ret);
  return out;
}
