// JSON for AssemblyScript swarms: a strict reader for payloads and a writer
// for outputs.
//
//     const payload = parse(task.payload);
//     if (payload === null) return invalidPayload("not JSON: " + lastError);
//     const name = payload.get("name");   // JsonValue | null
//
//     const out = new JsonWriter();
//     out.beginObject(); out.key("greeting"); out.string("hello"); out.endObject();
//     return ok(out.toString());
//
// The reader takes exactly one value (RFC 8259: no NaN, no comments, no
// trailing commas, no lone surrogate escapes), nested at most 128 deep.

export const KIND_NULL: i32 = 0;
export const KIND_BOOL: i32 = 1;
export const KIND_NUMBER: i32 = 2;
export const KIND_STRING: i32 = 3;
export const KIND_ARRAY: i32 = 4;
export const KIND_OBJECT: i32 = 5;

/** Deepest nesting `parse` accepts. */
export const MAX_DEPTH: i32 = 128;

/** A parsed JSON value. */
export class JsonValue {
  kind: i32 = KIND_NULL;
  boolean: bool = false;
  number: f64 = 0;
  str: string = "";
  /** ARRAY: the items; OBJECT: the members' values, in document order. */
  items: JsonValue[] = [];
  /** OBJECT: the members' names. */
  keys: string[] = [];
  /** Where the value is in the text it was parsed from: `text.substring(start,
   * end)` is its JSON as written (to keep or pass on a value as it is). */
  start: i32 = 0;
  end: i32 = 0;

  /** The member `key` of an object (the last of equal names), or null. */
  get(key: string): JsonValue | null {
    if (this.kind != KIND_OBJECT) return null;
    let found: JsonValue | null = null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) found = this.items[i];
    }
    return found;
  }

  /** The first member name not in `allowed`, or null. */
  unknownKey(allowed: string[]): string | null {
    if (this.kind != KIND_OBJECT) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (!allowed.includes(this.keys[i])) return this.keys[i];
    }
    return null;
  }
}

/** Why the last `parse` returned null. */
export let lastError: string = "";

class Reader {
  at: i32 = 0;
  error: string | null = null;
  constructor(public s: string) {}

  fail(why: string): void {
    if (this.error === null) this.error = why + " at character " + this.at.toString();
  }

  ws(): void {
    while (this.at < this.s.length) {
      const c = this.s.charCodeAt(this.at);
      if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) this.at++;
      else break;
    }
  }

  hex4(): i32 {
    if (this.s.length - this.at < 4) {
      this.fail("truncated \\u escape");
      return -1;
    }
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.s.charCodeAt(this.at++);
      v <<= 4;
      if (c >= 0x30 && c <= 0x39) v |= c - 0x30;
      else if (c >= 0x61 && c <= 0x66) v |= c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) v |= c - 0x41 + 10;
      else {
        this.fail("invalid \\u escape");
        return -1;
      }
    }
    return v;
  }

  string(): string {
    this.at++;
    const parts = new Array<string>();
    let run = this.at;
    while (true) {
      if (this.at >= this.s.length) {
        this.fail("unterminated string");
        return "";
      }
      const c = this.s.charCodeAt(this.at);
      if (c == 0x22) {
        parts.push(this.s.substring(run, this.at));
        this.at++;
        return parts.join("");
      }
      if (c < 0x20) {
        this.fail("control character in a string");
        return "";
      }
      if (c != 0x5c) {
        this.at++;
        continue;
      }
      parts.push(this.s.substring(run, this.at));
      this.at++;
      if (this.at >= this.s.length) {
        this.fail("unterminated string");
        return "";
      }
      const e = this.s.charCodeAt(this.at++);
      if (e == 0x22) parts.push("\"");
      else if (e == 0x5c) parts.push("\\");
      else if (e == 0x2f) parts.push("/");
      else if (e == 0x62) parts.push("\b");
      else if (e == 0x66) parts.push("\f");
      else if (e == 0x6e) parts.push("\n");
      else if (e == 0x72) parts.push("\r");
      else if (e == 0x74) parts.push("\t");
      else if (e == 0x75) {
        const cp = this.hex4();
        if (cp < 0) return "";
        if (cp >= 0xdc00 && cp <= 0xdfff) {
          this.fail("lone surrogate in a \\u escape");
          return "";
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (
            this.s.length - this.at < 2 ||
            this.s.charCodeAt(this.at) != 0x5c ||
            this.s.charCodeAt(this.at + 1) != 0x75
          ) {
            this.fail("lone surrogate in a \\u escape");
            return "";
          }
          this.at += 2;
          const low = this.hex4();
          if (low < 0) return "";
          if (low < 0xdc00 || low > 0xdfff) {
            this.fail("lone surrogate in a \\u escape");
            return "";
          }
          parts.push(String.fromCharCode(cp, low));
        } else {
          parts.push(String.fromCharCode(cp));
        }
      } else {
        this.fail("invalid escape");
        return "";
      }
      run = this.at;
    }
  }

  digits(): i32 {
    const start = this.at;
    while (this.at < this.s.length) {
      const c = this.s.charCodeAt(this.at);
      if (c < 0x30 || c > 0x39) break;
      this.at++;
    }
    return this.at - start;
  }

  number(): f64 {
    const start = this.at;
    if (this.s.charCodeAt(this.at) == 0x2d) this.at++;
    if (this.at >= this.s.length) {
      this.fail("invalid number");
      return 0;
    }
    const first = this.s.charCodeAt(this.at);
    if (first == 0x30) this.at++;
    else if (first >= 0x31 && first <= 0x39) this.digits();
    else {
      this.fail("invalid number");
      return 0;
    }
    if (this.at < this.s.length && this.s.charCodeAt(this.at) == 0x2e) {
      this.at++;
      if (this.digits() == 0) {
        this.fail("invalid number");
        return 0;
      }
    }
    if (this.at < this.s.length && (this.s.charCodeAt(this.at) | 0x20) == 0x65) {
      this.at++;
      const sign = this.at < this.s.length ? this.s.charCodeAt(this.at) : 0;
      if (sign == 0x2b || sign == 0x2d) this.at++;
      if (this.digits() == 0) {
        this.fail("invalid number");
        return 0;
      }
    }
    const v = parseFloat(this.s.substring(start, this.at));
    if (!isFinite(v)) this.fail("number out of range");
    return v;
  }

  literal(word: string): bool {
    if (this.s.substr(this.at, word.length) != word) {
      this.fail("expected a value");
      return false;
    }
    this.at += word.length;
    return true;
  }

  value(depth: i32): JsonValue {
    this.ws();
    const v = this.valueAt(depth);
    v.end = this.at;
    return v;
  }

  valueAt(depth: i32): JsonValue {
    const v = new JsonValue();
    v.start = this.at;
    if (this.at >= this.s.length) {
      this.fail("expected a value");
      return v;
    }
    const c = this.s.charCodeAt(this.at);
    if (c == 0x6e) {
      this.literal("null");
    } else if (c == 0x74) {
      v.kind = KIND_BOOL;
      v.boolean = this.literal("true");
    } else if (c == 0x66) {
      v.kind = KIND_BOOL;
      this.literal("false");
    } else if (c == 0x22) {
      v.kind = KIND_STRING;
      v.str = this.string();
    } else if (c == 0x5b || c == 0x7b) {
      const object = c == 0x7b;
      const close = object ? 0x7d : 0x5d;
      if (depth >= MAX_DEPTH) {
        this.fail("nested too deeply");
        return v;
      }
      v.kind = object ? KIND_OBJECT : KIND_ARRAY;
      this.at++;
      this.ws();
      if (this.at < this.s.length && this.s.charCodeAt(this.at) == close) {
        this.at++;
        return v;
      }
      while (this.error === null) {
        if (object) {
          this.ws();
          if (this.at >= this.s.length || this.s.charCodeAt(this.at) != 0x22) {
            this.fail("expected a member name");
            break;
          }
          const key = this.string();
          if (this.error !== null) break;
          this.ws();
          if (this.at >= this.s.length || this.s.charCodeAt(this.at) != 0x3a) {
            this.fail("expected ':'");
            break;
          }
          this.at++;
          v.keys.push(key);
        }
        v.items.push(this.value(depth + 1));
        if (this.error !== null) break;
        this.ws();
        if (this.at >= this.s.length) {
          this.fail(object ? "expected ',' or '}'" : "expected ',' or ']'");
          break;
        }
        const next = this.s.charCodeAt(this.at++);
        if (next == close) break;
        if (next != 0x2c) this.fail(object ? "expected ',' or '}'" : "expected ',' or ']'");
      }
    } else if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      v.kind = KIND_NUMBER;
      v.number = this.number();
    } else {
      this.fail("expected a value");
    }
    return v;
  }
}

/** `text` parsed, or null (the reason in `lastError`). */
export function parse(text: string): JsonValue | null {
  const r = new Reader(text);
  const v = r.value(0);
  if (r.error === null) {
    r.ws();
    if (r.at != text.length) r.fail("trailing characters");
  }
  const error = r.error;
  if (error !== null) {
    lastError = error;
    return null;
  }
  return v;
}

/** `s` as a JSON string literal. */
export function quote(s: string): string {
  const parts = new Array<string>();
  parts.push("\"");
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | null = null;
    if (c == 0x22) esc = "\\\"";
    else if (c == 0x5c) esc = "\\\\";
    else if (c == 0x0a) esc = "\\n";
    else if (c == 0x0d) esc = "\\r";
    else if (c == 0x09) esc = "\\t";
    else if (c == 0x08) esc = "\\b";
    else if (c == 0x0c) esc = "\\f";
    else if (c < 0x20) esc = "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else if (c >= 0xd800 && c <= 0xdfff) {
      // A surrogate that is not half of a pair becomes U+FFFD: the host
      // cannot take an unpaired one.
      const high = c <= 0xdbff;
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (high && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      esc = "\ufffd";
    }
    if (esc !== null) {
      parts.push(s.substring(run, i));
      parts.push(esc);
      run = i + 1;
    }
  }
  parts.push(s.substring(run));
  parts.push("\"");
  return parts.join("");
}

/** Builds one JSON text: commas and escaping are its business. A misuse
 * (a value where a key is due, closing what is not open) marks it
 * `failed`. */
export class JsonWriter {
  parts: string[] = [];
  // Per level: whether it is an object, and whether it has a value yet.
  objects: bool[] = [];
  filled: bool[] = [];
  valueDue: bool = false;
  failed: bool = false;
  done: bool = false;

  private beforeValue(): bool {
    if (this.failed) return false;
    const depth = this.objects.length;
    if (depth > 0 && this.objects[depth - 1]) {
      if (!this.valueDue) {
        this.failed = true;
        return false;
      }
      this.valueDue = false;
      return true;
    }
    if (depth == 0) {
      if (this.done) {
        this.failed = true;
        return false;
      }
      this.done = true;
      return true;
    }
    if (this.filled[depth - 1]) this.parts.push(",");
    this.filled[depth - 1] = true;
    return true;
  }

  private open(object: bool): void {
    if (!this.beforeValue()) return;
    this.parts.push(object ? "{" : "[");
    this.objects.push(object);
    this.filled.push(false);
  }

  private close(object: bool): void {
    const depth = this.objects.length;
    if (this.failed || depth == 0 || this.objects[depth - 1] != object || this.valueDue) {
      this.failed = true;
      return;
    }
    this.parts.push(object ? "}" : "]");
    this.objects.pop();
    this.filled.pop();
  }

  beginObject(): void {
    this.open(true);
  }
  endObject(): void {
    this.close(true);
  }
  beginArray(): void {
    this.open(false);
  }
  endArray(): void {
    this.close(false);
  }

  key(name: string): void {
    const depth = this.objects.length;
    if (this.failed || depth == 0 || !this.objects[depth - 1] || this.valueDue) {
      this.failed = true;
      return;
    }
    if (this.filled[depth - 1]) this.parts.push(",");
    this.filled[depth - 1] = true;
    this.parts.push(quote(name));
    this.parts.push(":");
    this.valueDue = true;
  }

  string(s: string): void {
    if (this.beforeValue()) this.parts.push(quote(s));
  }
  int(n: i64): void {
    if (this.beforeValue()) this.parts.push(n.toString());
  }
  uint(n: u64): void {
    if (this.beforeValue()) this.parts.push(n.toString());
  }
  /** A finite number (NaN and infinities are written as null). */
  float(n: f64): void {
    if (this.beforeValue()) this.parts.push(isFinite(n) ? n.toString() : "null");
  }
  bool(b: bool): void {
    if (this.beforeValue()) this.parts.push(b ? "true" : "false");
  }
  null(): void {
    if (this.beforeValue()) this.parts.push("null");
  }
  /** Already-encoded JSON text, as one value. */
  raw(json: string): void {
    if (this.beforeValue()) this.parts.push(json);
  }

  /** Whether the text is one whole value. */
  get complete(): bool {
    return !this.failed && this.done && this.objects.length == 0;
  }

  toString(): string {
    return this.parts.join("");
  }
}
