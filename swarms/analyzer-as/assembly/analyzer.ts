// `analyzer` in AssemblyScript: the same four tasks as the Rust swarm in
// `swarms/analyzer`, with byte-identical results (see docs/analyzer.md).
//
// A port of the TypeScript one (`swarms/analyzer-ts/app.ts`), kept as close
// to it as AssemblyScript allows: no exceptions (a failed parse is a flag on
// the reader, checked after every step), no closures, no regular
// expressions, and strings built from arrays of parts.
//
// Only the standard library is used, and nothing that imports from the host
// except `env.abort`.

export const ANALYZER_OK: i32 = 0;
export const ANALYZER_INVALID_PAYLOAD: i32 = 1;
export const ANALYZER_UNKNOWN_TASK_TYPE: i32 = 2;

export const TASK_TYPES: string[] = ["analyze_code", "count_lines", "parse_json", "check_security"];

/** What one task came to: `kind` is one of the `ANALYZER_*` codes. */
export class Outcome {
  constructor(public kind: i32, public text: string) {}
}

// ---- text primitives, as Rust's `str` has them ----------------------------

/** `char::is_whitespace`: Unicode White_Space (all 25 are in the BMP). */
function isRustWhitespace(c: i32): bool {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0d);
  if (c < 0x85) return false;
  if (c == 0x85 || c == 0xa0 || c == 0x1680) return true;
  if (c >= 0x2000 && c <= 0x200a) return true;
  return c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/** `str::trim`. */
function trim(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isRustWhitespace(s.charCodeAt(start))) start++;
  while (end > start && isRustWhitespace(s.charCodeAt(end - 1))) end--;
  if (start == 0 && end == s.length) return s;
  return s.substring(start, end);
}

/** `str::lines`: split at `\n` or `\r\n`; a final line ending is optional. */
function lines(s: string): string[] {
  const out = new Array<string>();
  if (s.length == 0) return out;
  const parts = s.split("\n");
  const last = parts.length - 1;
  for (let k = 0; k < last; k++) {
    const p = parts[k];
    const n = p.length;
    out.push(n > 0 && p.charCodeAt(n - 1) == 0x0d ? p.substring(0, n - 1) : p);
  }
  if (parts[last].length != 0) out.push(parts[last]);
  return out;
}

/** `chars().count()`: Unicode scalar values, not UTF-16 units (no lone surrogates). */
function charCount(s: string): i32 {
  const n = s.length;
  let count = n;
  for (let k = 0; k < n; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0xdc00 && c <= 0xdfff) count--;
  }
  return count;
}

/** The first `n` characters (scalar values) of `s`. */
function takeChars(s: string, n: i32): string {
  const len = s.length;
  let count = 0;
  for (let k = 0; k < len; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0xdc00 && c <= 0xdfff) continue; // second half of a pair
    if (count == n) return s.substring(0, k);
    count++;
  }
  return s;
}

/** `str::to_ascii_lowercase`: only A-Z change. */
function asciiLower(s: string): string {
  const n = s.length;
  let k = 0;
  while (k < n) {
    const c = s.charCodeAt(k);
    if (c >= 0x41 && c <= 0x5a) break;
    k++;
  }
  if (k == n) return s;
  const units = new Uint16Array(n);
  for (let j = 0; j < n; j++) {
    let c = s.charCodeAt(j);
    if (c >= 0x41 && c <= 0x5a) c += 32;
    units[j] = <u16>c;
  }
  return String.UTF16.decode(units.buffer);
}

/** serde_json's string serialization (compact, non-ASCII raw). */
function jsonString(s: string): string {
  const n = s.length;
  let k = 0;
  while (k < n) {
    const c = s.charCodeAt(k);
    if (c < 0x20 || c == 0x22 || c == 0x5c) break;
    k++;
  }
  if (k == n) return "\"" + s + "\"";
  const parts = new Array<string>();
  parts.push("\"");
  let run = 0;
  for (let i = k; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    if (i > run) parts.push(s.substring(run, i));
    run = i + 1;
    if (c == 0x22) parts.push("\\\"");
    else if (c == 0x5c) parts.push("\\\\");
    else if (c == 0x08) parts.push("\\b");
    else if (c == 0x09) parts.push("\\t");
    else if (c == 0x0a) parts.push("\\n");
    else if (c == 0x0c) parts.push("\\f");
    else if (c == 0x0d) parts.push("\\r");
    else parts.push("\\u00" + hexDigit(c >> 4) + hexDigit(c & 15));
  }
  if (run < n) parts.push(s.substring(run, n));
  parts.push("\"");
  return parts.join("");
}

function hexDigit(d: i32): string {
  return String.fromCharCode(d < 10 ? 0x30 + d : 0x57 + d);
}

// ---- analyze_code -------------------------------------------------------

const LANGUAGE_NAMES: string[] = ["python", "rust", "javascript", "go", "typescript"];

/** The canonical name of a language `Language::parse` accepts, or "". */
function parseLanguage(name: string): string {
  const low = asciiLower(name);
  if (low == "python" || low == "py") return "python";
  if (low == "rust" || low == "rs") return "rust";
  if (low == "javascript" || low == "js") return "javascript";
  if (low == "go" || low == "golang") return "go";
  if (low == "typescript" || low == "ts") return "typescript";
  return "";
}

/** Whether a code line leaves a `/*` comment open at its end. */
function opensBlock(code: string): bool {
  const start = code.lastIndexOf("/*");
  if (start < 0) return false;
  return !code.substring(start + 2).includes("*/") && !code.substring(0, start).includes("//");
}

function analyzeCode(language: string, source: string): string {
  let lineCount = 0;
  let blank = 0;
  let comment = 0;
  let code = 0;
  let inBlock = false;
  const python = language == "python";
  const all = lines(source);
  for (let k = 0; k < all.length; k++) {
    lineCount++;
    const t = trim(all[k]);
    if (inBlock) {
      comment++;
      const end = t.indexOf("*/");
      if (end >= 0) {
        inBlock = false;
        const rest = trim(t.substring(end + 2));
        if (rest.length != 0 && !rest.startsWith("//")) {
          // Code follows the end of the block comment on this line.
          comment--;
          code++;
          inBlock = opensBlock(rest);
        }
      }
      continue;
    }
    if (t.length == 0) {
      blank++;
      continue;
    }
    let isComment: bool;
    if (python) {
      isComment = t.startsWith("#");
    } else if (t.startsWith("//")) {
      isComment = true;
    } else if (t.startsWith("/*")) {
      const end = t.indexOf("*/", 2);
      if (end < 0) {
        inBlock = true;
        isComment = true;
      } else {
        const after = trim(t.substring(end + 2));
        isComment = after.length == 0 || after.startsWith("//");
      }
    } else {
      inBlock = opensBlock(t);
      isComment = false;
    }
    if (isComment) comment++;
    else code++;
  }
  return "{\"language\":" + jsonString(language) +
    ",\"line_count\":" + lineCount.toString() +
    ",\"blank_lines\":" + blank.toString() +
    ",\"comment_lines\":" + comment.toString() +
    ",\"code_lines\":" + code.toString() + "}";
}

// ---- count_lines --------------------------------------------------------

function countLines(source: string): string {
  let lineCount = 0;
  let blank = 0;
  let nonBlank = 0;
  let longest = 0;
  const all = lines(source);
  for (let k = 0; k < all.length; k++) {
    const line = all[k];
    lineCount++;
    if (trim(line).length == 0) blank++;
    else nonBlank++;
    const len = charCount(line);
    if (len > longest) longest = len;
  }
  return "{\"line_count\":" + lineCount.toString() +
    ",\"blank_lines\":" + blank.toString() +
    ",\"non_blank_lines\":" + nonBlank.toString() +
    ",\"longest_line\":" + longest.toString() + "}";
}

// ---- check_security -----------------------------------------------------

const SQL_FINDING = "{\"kind\":\"sql_injection\",\"line\":";
const SQL_MESSAGE = ",\"message\":\"SELECT ... WHERE without a ? or $ placeholder: possible SQL injection\",\"snippet\":";
const SECRET_FINDING = "{\"kind\":\"hardcoded_secret\",\"line\":";
const SECRET_WORDS: string[] = ["password", "secret"];
const SECRET_MESSAGES: string[] = [
  ",\"message\":\"mentions \\\"password\\\": possible hard-coded secret\",\"snippet\":",
  ",\"message\":\"mentions \\\"secret\\\": possible hard-coded secret\",\"snippet\":",
];

function checkSecurity(source: string): string {
  const parts = new Array<string>(); // the findings, as JSON text in pieces
  let count = 0;
  const all = lines(source);
  for (let i = 0; i < all.length; i++) {
    const line = all[i];
    const lower = asciiLower(line);
    const sql = lower.includes("select") && lower.includes("where") && !line.includes("?") && !line.includes("$");
    let secret = -1;
    for (let w = 0; w < SECRET_WORDS.length; w++) {
      if (lower.includes(SECRET_WORDS[w])) {
        secret = w;
        break;
      }
    }
    if (!sql && secret < 0) continue;
    const snippet = jsonString(takeChars(trim(line), 120));
    const number = (i + 1).toString();
    if (sql) {
      if (count++ > 0) parts.push(",");
      parts.push(SQL_FINDING);
      parts.push(number);
      parts.push(SQL_MESSAGE);
      parts.push(snippet);
      parts.push("}");
    }
    if (secret >= 0) {
      if (count++ > 0) parts.push(",");
      parts.push(SECRET_FINDING);
      parts.push(number);
      parts.push(SECRET_MESSAGES[secret]);
      parts.push(snippet);
      parts.push("}");
    }
  }
  return "{\"issue_count\":" + count.toString() + ",\"findings\":[" + parts.join("") + "]}";
}

// ---- parse_json: serde_json's grammar, limits, messages and positions ------

const KIND_NULL: i32 = 0;
const KIND_BOOL: i32 = 1;
const KIND_NUMBER: i32 = 2;
const KIND_STRING: i32 = 3;
const KIND_ARRAY: i32 = 4;
const KIND_OBJECT: i32 = 5;
const KIND_NAMES: string[] = ["null", "bool", "number", "string", "array", "object"];

const EOF_LIST = "EOF while parsing a list";
const EOF_OBJECT = "EOF while parsing an object";
const EOF_STRING = "EOF while parsing a string";
const EOF_VALUE = "EOF while parsing a value";
const EXPECTED_VALUE = "expected value";
const EXPECTED_IDENT = "expected ident";
const INVALID_NUMBER = "invalid number";
const OUT_OF_RANGE = "number out of range";
const INVALID_ESCAPE = "invalid escape";
const CONTROL_CHARACTER = "control character (\\u0000-\\u001F) found while parsing a string";
const LONE_SURROGATE = "lone leading surrogate in hex escape";
const END_OF_HEX_ESCAPE = "unexpected end of hex escape";
const KEY_MUST_BE_A_STRING = "key must be a string";
const EXPECTED_COLON = "expected `:`";
const EXPECTED_LIST_COMMA_OR_END = "expected `,` or `]`";
const EXPECTED_OBJECT_COMMA_OR_END = "expected `,` or `}`";
const TRAILING_COMMA = "trailing comma";
const TRAILING_CHARACTERS = "trailing characters";
const RECURSION_LIMIT_EXCEEDED = "recursion limit exceeded";
const RECURSION_LIMIT: i32 = 128;

/** The digits of 2^1024 - 2^970, the smallest magnitude that rounds to infinity (309 digits). */
const INFINITY_DIGITS =
  "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

@inline function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Whether the decimal number with integer digits `b[a..e)`, fraction digits
 * `b[f..g)` (`f == g == e` without a fraction) and exponent `exp` rounds to
 * ±infinity as an IEEE-754 double (correct rounding, ties away from the
 * largest finite value because its mantissa is odd).
 */
function roundsToInfinity(b: Uint8Array, a: i32, e: i32, f: i32, g: i32, exp: i64): bool {
  let k = a;
  while (k < e && b[k] == 0x30) k++;
  let inInteger = k < e;
  let point: i64; // value = 0.DIGITS * 10^point
  if (inInteger) {
    point = <i64>(e - k) + exp;
  } else {
    k = f;
    while (k < g && b[k] == 0x30) k++;
    if (k == g) return false; // zero
    point = exp - <i64>(k - f);
  }
  if (point != 309) return point > 309;
  const tn = INFINITY_DIGITS.length;
  for (let t = 0; t < tn; t++) {
    if (inInteger && k == e) {
      inInteger = false;
      k = f;
    }
    if (!inInteger && k >= g) return false; // a prefix of the threshold: smaller
    const dc = <i32>b[k];
    const tc = INFINITY_DIGITS.charCodeAt(t);
    if (dc != tc) return dc > tc;
    k++;
  }
  return true; // at least the threshold
}

/**
 * A validating reader over UTF-8 bytes with serde_json's errors. AssemblyScript
 * has no exceptions: the first error is recorded (`failed`, `message`, and
 * `index`, the byte offset serde_json reports) and every step returns as soon
 * as `failed` is set.
 */
class JsonChecker {
  b: Uint8Array;
  n: i32;
  i: i32 = 0;
  depth: i32 = 0;
  failed: bool = false;
  message: string = "";
  index: i32 = 0;

  constructor(text: string) {
    this.b = Uint8Array.wrap(String.UTF8.encode(text));
    this.n = this.b.length;
  }

  /** An error at serde_json byte position `index`. */
  failIndex(message: string, index: i32): void {
    if (this.failed) return;
    this.failed = true;
    this.message = message;
    this.index = index;
  }

  /** An error caused by the byte at `pos`. */
  failAt(message: string, pos: i32): void {
    this.failIndex(message, pos + 1);
  }

  /** serde_json's `peek_error`: at the next byte, or at the end. */
  failPeek(message: string): void {
    this.failIndex(message, this.i < this.n ? this.i + 1 : this.n);
  }

  failEof(message: string): void {
    this.failIndex(message, this.n);
  }

  whitespace(): void {
    const b = this.b;
    const n = this.n;
    let i = this.i;
    while (i < n) {
      const c = b[i];
      if (c != 0x20 && c != 0x0a && c != 0x09 && c != 0x0d) break;
      i++;
    }
    this.i = i;
  }

  ident(rest: string): void {
    for (let k = 0; k < rest.length; k++) {
      if (this.i == this.n) {
        this.failEof(EOF_VALUE);
        return;
      }
      const c = <i32>this.b[this.i++];
      if (c != rest.charCodeAt(k)) {
        this.failAt(EXPECTED_IDENT, this.i - 1);
        return;
      }
    }
  }

  /** Four hex digits; -1 after an error. */
  hex4(): i32 {
    const i = this.i;
    if (this.n - i < 4) {
      this.i = this.n;
      this.failEof(EOF_STRING);
      return -1;
    }
    this.i = i + 4;
    let value = 0;
    for (let k = 0; k < 4; k++) {
      const h = hexValue(this.b[i + k]);
      if (h < 0) {
        this.failAt(INVALID_ESCAPE, i + 3);
        return -1;
      }
      value = value * 16 + h;
    }
    return value;
  }

  /** The rest of a string whose opening quote is consumed. */
  string(): void {
    const b = this.b;
    const n = this.n;
    for (;;) {
      const i = this.i;
      if (i == n) {
        this.failEof(EOF_STRING);
        return;
      }
      const c = b[i];
      if (c == 0x22) {
        this.i = i + 1;
        return;
      }
      if (c == 0x5c) {
        this.i = i + 1;
        if (this.i == n) {
          this.failEof(EOF_STRING);
          return;
        }
        const e = b[this.i++];
        if (e == 0x22 || e == 0x5c || e == 0x2f || e == 0x62 || e == 0x66 || e == 0x6e || e == 0x72 || e == 0x74) {
          continue;
        }
        if (e != 0x75) {
          this.failAt(INVALID_ESCAPE, this.i - 1);
          return;
        }
        const u = this.hex4();
        if (u < 0) return;
        if (u >= 0xdc00 && u <= 0xdfff) {
          this.failAt(LONE_SURROGATE, this.i - 1);
          return;
        }
        if (u >= 0xd800 && u <= 0xdbff) {
          if (this.i == n) {
            this.failEof(EOF_STRING);
            return;
          }
          if (b[this.i] != 0x5c) {
            this.failAt(END_OF_HEX_ESCAPE, this.i);
            return;
          }
          this.i++;
          if (this.i == n) {
            this.failEof(EOF_STRING);
            return;
          }
          if (b[this.i] != 0x75) {
            this.failAt(END_OF_HEX_ESCAPE, this.i);
            return;
          }
          this.i++;
          const low = this.hex4();
          if (low < 0) return;
          if (!(low >= 0xdc00 && low <= 0xdfff)) {
            this.failAt(LONE_SURROGATE, this.i - 1);
            return;
          }
        }
        continue;
      }
      if (c < 0x20) {
        this.failAt(CONTROL_CHARACTER, i);
        return;
      }
      this.i = i + 1;
    }
  }

  /** A number starting at `-` or a digit. */
  number(): void {
    const b = this.b;
    const n = this.n;
    if (b[this.i] == 0x2d) this.i++;
    if (this.i == n) {
      this.failEof(EOF_VALUE);
      return;
    }
    const intStart = this.i;
    let c = <i32>b[this.i++];
    let mantissaNonzero = false;
    if (c == 0x30) {
      if (this.i < n && isDigit(b[this.i])) {
        this.failAt(INVALID_NUMBER, this.i);
        return;
      }
    } else if (c >= 0x31 && c <= 0x39) {
      mantissaNonzero = true;
      while (this.i < n && isDigit(b[this.i])) this.i++;
    } else {
      this.failAt(INVALID_NUMBER, this.i - 1);
      return;
    }
    const intEnd = this.i;
    let fracStart = intEnd;
    let fracEnd = intEnd;
    if (this.i < n && b[this.i] == 0x2e) {
      this.i++;
      if (this.i == n) {
        this.failEof(EOF_VALUE);
        return;
      }
      if (!isDigit(b[this.i])) {
        this.failAt(INVALID_NUMBER, this.i);
        return;
      }
      fracStart = this.i;
      while (this.i < n && isDigit(b[this.i])) {
        if (b[this.i] != 0x30) mantissaNonzero = true;
        this.i++;
      }
      fracEnd = this.i;
    }
    let exponent: i64 = 0;
    if (this.i < n && (b[this.i] == 0x65 || b[this.i] == 0x45)) {
      this.i++;
      let negative = false;
      if (this.i < n && (b[this.i] == 0x2b || b[this.i] == 0x2d)) {
        negative = b[this.i] == 0x2d;
        this.i++;
      }
      if (this.i == n) {
        this.failEof(EOF_VALUE);
        return;
      }
      c = b[this.i++];
      if (!isDigit(c)) {
        this.failAt(INVALID_NUMBER, this.i - 1);
        return;
      }
      let e: i32 = c - 48;
      while (this.i < n && isDigit(b[this.i])) {
        const d = <i32>b[this.i++] - 48;
        // serde_json stops reading an exponent that overflows i32.
        if (e > 214748364 || (e == 214748364 && d > 7)) {
          if (mantissaNonzero && !negative) {
            this.failAt(OUT_OF_RANGE, this.i - 1);
            return;
          }
          while (this.i < n && isDigit(b[this.i])) this.i++;
          return;
        }
        e = e * 10 + d;
      }
      exponent = negative ? -<i64>e : <i64>e;
    }
    if (roundsToInfinity(b, intStart, intEnd, fracStart, fracEnd, exponent)) {
      this.failAt(OUT_OF_RANGE, this.i - 1);
    }
  }

  /** One value; its kind, or -1 after an error. */
  value(): i32 {
    this.whitespace();
    const i = this.i;
    if (i == this.n) {
      this.failEof(EOF_VALUE);
      return -1;
    }
    const c = this.b[i];
    let kind: i32 = -1;
    if (c == 0x6e) {
      this.i++;
      this.ident("ull");
      kind = KIND_NULL;
    } else if (c == 0x74) {
      this.i++;
      this.ident("rue");
      kind = KIND_BOOL;
    } else if (c == 0x66) {
      this.i++;
      this.ident("alse");
      kind = KIND_BOOL;
    } else if (c == 0x2d || isDigit(c)) {
      this.number();
      kind = KIND_NUMBER;
    } else if (c == 0x22) {
      this.i++;
      this.string();
      kind = KIND_STRING;
    } else if (c == 0x5b || c == 0x7b) {
      this.depth++;
      if (this.depth >= RECURSION_LIMIT) {
        this.failAt(RECURSION_LIMIT_EXCEEDED, i);
        return -1;
      }
      this.i++;
      if (c == 0x5b) this.array();
      else this.object();
      this.depth--;
      kind = c == 0x5b ? KIND_ARRAY : KIND_OBJECT;
    } else {
      this.failAt(EXPECTED_VALUE, i);
    }
    return this.failed ? -1 : kind;
  }

  array(): void {
    let first = true;
    for (;;) {
      this.whitespace();
      if (this.i == this.n) {
        this.failEof(EOF_LIST);
        return;
      }
      const c = this.b[this.i];
      if (c == 0x5d) {
        this.i++;
        return;
      }
      if (first) {
        first = false;
      } else if (c == 0x2c) {
        this.i++;
        this.whitespace();
        if (this.i == this.n) {
          this.failEof(EOF_VALUE);
          return;
        }
        if (this.b[this.i] == 0x5d) {
          this.failAt(TRAILING_COMMA, this.i);
          return;
        }
      } else {
        this.failAt(EXPECTED_LIST_COMMA_OR_END, this.i);
        return;
      }
      this.value();
      if (this.failed) return;
    }
  }

  object(): void {
    let first = true;
    for (;;) {
      this.whitespace();
      if (this.i == this.n) {
        this.failEof(EOF_OBJECT);
        return;
      }
      const c = this.b[this.i];
      if (c == 0x7d) {
        this.i++;
        return;
      }
      if (first) {
        first = false;
        if (c != 0x22) {
          this.failAt(KEY_MUST_BE_A_STRING, this.i);
          return;
        }
      } else if (c == 0x2c) {
        this.i++;
        this.whitespace();
        if (this.i == this.n) {
          this.failEof(EOF_VALUE);
          return;
        }
        if (this.b[this.i] == 0x7d) {
          this.failAt(TRAILING_COMMA, this.i);
          return;
        }
        if (this.b[this.i] != 0x22) {
          this.failAt(KEY_MUST_BE_A_STRING, this.i);
          return;
        }
      } else {
        this.failAt(EXPECTED_OBJECT_COMMA_OR_END, this.i);
        return;
      }
      this.i++;
      this.string();
      if (this.failed) return;
      this.whitespace();
      if (this.i == this.n) {
        this.failEof(EOF_OBJECT);
        return;
      }
      if (this.b[this.i] != 0x3a) {
        this.failAt(EXPECTED_COLON, this.i);
        return;
      }
      this.i++;
      this.value();
      if (this.failed) return;
    }
  }

  /** The kind of the one JSON document in the text; -1 after an error. */
  document(): i32 {
    const kind = this.value();
    if (this.failed) return -1;
    this.whitespace();
    if (this.i < this.n) {
      this.failAt(TRAILING_CHARACTERS, this.i);
      return -1;
    }
    return kind;
  }

  /** serde_json's line of the error position. */
  line(): i32 {
    const b = this.b;
    let line = 1;
    for (let k = 0; k < this.index; k++) {
      if (b[k] == 0x0a) line++;
    }
    return line;
  }

  /** serde_json's column of the error position (in bytes). */
  column(): i32 {
    const b = this.b;
    let k = this.index;
    while (k > 0 && b[k - 1] != 0x0a) k--;
    return this.index - k;
  }

  /** The text of the already-validated string body `b[start..end)`, unescaped. */
  decode(start: i32, end: i32): string {
    const b = this.b;
    const base = b.dataStart;
    let k = start;
    while (k < end && b[k] != 0x5c) k++;
    if (k == end) return String.UTF8.decodeUnsafe(base + <usize>start, <usize>(end - start));
    const parts = new Array<string>();
    let run = start;
    let i = k;
    while (i < end) {
      if (b[i] != 0x5c) {
        i++;
        continue;
      }
      if (i > run) parts.push(String.UTF8.decodeUnsafe(base + <usize>run, <usize>(i - run)));
      const e = b[i + 1];
      if (e == 0x75) {
        const unit = this.hexAt(i + 2);
        i += 6;
        if (unit >= 0xd800 && unit <= 0xdbff) {
          parts.push(String.fromCharCode(unit, this.hexAt(i + 2)));
          i += 6;
        } else {
          parts.push(String.fromCharCode(unit));
        }
      } else {
        let unit: i32 = e; // `"`, `\` and `/` stand for themselves
        if (e == 0x62) unit = 0x08;
        else if (e == 0x66) unit = 0x0c;
        else if (e == 0x6e) unit = 0x0a;
        else if (e == 0x72) unit = 0x0d;
        else if (e == 0x74) unit = 0x09;
        parts.push(String.fromCharCode(unit));
        i += 2;
      }
      run = i;
    }
    if (run < end) parts.push(String.UTF8.decodeUnsafe(base + <usize>run, <usize>(end - run)));
    return parts.join("");
  }

  hexAt(i: i32): i32 {
    const b = this.b;
    return (hexValue(b[i]) << 12) | (hexValue(b[i + 1]) << 8) | (hexValue(b[i + 2]) << 4) | hexValue(b[i + 3]);
  }
}

function parseJson(text: string): string {
  const checker = new JsonChecker(text);
  const kind = checker.document();
  if (!checker.failed) return "{\"valid\":true,\"kind\":\"" + KIND_NAMES[kind] + "\"}";
  return "{\"valid\":false,\"error\":{\"message\":" + jsonString(checker.message) +
    ",\"line\":" + checker.line().toString() +
    ",\"column\":" + checker.column().toString() + "}}";
}

// ---- payloads: serde's derived struct decoding, deny_unknown_fields --------
//
// This follows serde_json's `deserialize_struct` for a struct of string fields
// step by step (`SeqAccess`, `MapAccess`, `end_seq`, `end_map`,
// `peek_invalid_type`, `fix_position`, `Deserializer::end`), so that the first
// problem found is the one serde reports, at its position.

class Payload {
  values: string[] = [];
  present: bool[] = [];
  error: string = "";
  ok: bool = false;
}

/** Rust's `{:?}` of a `str` (approximately: the message is informative). */
function debugQuote(s: string): string {
  const parts = new Array<string>();
  parts.push("\"");
  const n = s.length;
  let run = 0;
  let k = 0;
  while (k < n) {
    let c = s.charCodeAt(k);
    let width = 1;
    if (c >= 0xd800 && c <= 0xdbff && k + 1 < n) {
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(k + 1) - 0xdc00);
      width = 2;
    }
    let escaped = "";
    if (c == 0x22) escaped = "\\\"";
    else if (c == 0x5c) escaped = "\\\\";
    else if (c == 0x0a) escaped = "\\n";
    else if (c == 0x0d) escaped = "\\r";
    else if (c == 0x09) escaped = "\\t";
    else if (c == 0) escaped = "\\0";
    else if (needsUnicodeEscape(c)) escaped = "\\u{" + (<u32>c).toString(16) + "}";
    if (escaped.length != 0) {
      if (k > run) parts.push(s.substring(run, k));
      parts.push(escaped);
      run = k + width;
    }
    k += width;
  }
  if (run < n) parts.push(s.substring(run, n));
  parts.push("\"");
  return parts.join("");
}

/** Characters `char::escape_debug` writes as `\u{…}` (the common ones). */
function needsUnicodeEscape(c: i32): bool {
  if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) return true;
  if (c < 0x300) return false;
  if (c <= 0x36f) return true; // combining marks
  if (c == 0x1680 || (c >= 0x1ab0 && c <= 0x1aff) || (c >= 0x1dc0 && c <= 0x1dff)) return true;
  if (c >= 0x2000 && c <= 0x200f) return true;
  if (c >= 0x2028 && c <= 0x202f) return true;
  if (c >= 0x205f && c <= 0x206f) return true;
  if (c >= 0x20d0 && c <= 0x20ff) return true;
  if (c == 0x3000 || (c >= 0xe000 && c <= 0xf8ff)) return true;
  if ((c >= 0xfe00 && c <= 0xfe0f) || (c >= 0xfe20 && c <= 0xfe2f) || c == 0xfeff) return true;
  if (c >= 0xfff9 && c <= 0xfffb) return true;
  return c >= 0xe0000;
}

/** Rust's `Display` of an `f64` as serde's `WithDecimalPoint` writes it (approximately). */
function floatDisplay(x: f64): string {
  if (!isFinite(x)) return x > 0 ? "inf" : "-inf";
  const negative = x < 0 || (x == 0 && 1 / x < 0);
  let s = (negative ? -x : x).toString();
  let digits = s;
  let exp = 0;
  const e = s.indexOf("e");
  if (e >= 0) {
    digits = s.substring(0, e);
    exp = <i32>parseInt(s.substring(e + 1));
  }
  let point = digits.indexOf(".");
  if (point < 0) point = digits.length;
  else digits = digits.substring(0, point) + digits.substring(point + 1);
  point += exp;
  // strip leading zeros, keeping the point position right
  let lead = 0;
  while (lead < digits.length - 1 && digits.charCodeAt(lead) == 0x30) lead++;
  digits = digits.substring(lead);
  point -= lead;
  let out: string;
  if (point <= 0) out = "0." + "0".repeat(-point) + digits;
  else if (point >= digits.length) out = digits + "0".repeat(point - digits.length);
  else out = digits.substring(0, point) + "." + digits.substring(point);
  // trailing zeros of a fraction go
  if (out.includes(".")) {
    let end = out.length;
    while (out.charCodeAt(end - 1) == 0x30) end--;
    if (out.charCodeAt(end - 1) == 0x2e) end--;
    out = out.substring(0, end);
  }
  if (!out.includes(".")) out += ".0";
  return (negative ? "-" : "") + out;
}

/** What serde's `Unexpected` calls the number `text` (already validated). */
function describeNumber(text: string): string {
  let integer = true;
  for (let k = 0; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (c == 0x2e || c == 0x65 || c == 0x45) integer = false;
  }
  const negative = text.startsWith("-");
  const digits = negative ? text.substring(1) : text;
  if (integer) {
    // u64 for non-negative, i64 below zero; `-0` and overflows become floats
    const limit = negative ? "9223372036854775808" : "18446744073709551615";
    const fits = digits.length < limit.length || (digits.length == limit.length && digits <= limit);
    if (fits && !(negative && digits == "0")) return "integer `" + text + "`";
  }
  return "floating point `" + floatDisplay(parseFloat(text)) + "`";
}

class PayloadReader {
  c: JsonChecker;
  task: string;
  names: string[];
  structName: string;
  p: Payload = new Payload();
  /** A serde `custom` error (no position of its own until `fix_position`). */
  custom: string = "";

  constructor(task: string, text: string, names: string[], structName: string) {
    this.c = new JsonChecker(text);
    this.task = task;
    this.names = names;
    this.structName = structName;
    for (let k = 0; k < names.length; k++) {
      this.p.values.push("");
      this.p.present.push(false);
    }
  }

  /** `invalid type: …` for the value at the reader (`peek_invalid_type`). */
  invalidType(expected: string): void {
    const c = this.c;
    const ch = c.b[c.i];
    let what = "";
    if (ch == 0x6e) {
      c.i++;
      c.ident("ull");
      what = "null";
    } else if (ch == 0x74) {
      c.i++;
      c.ident("rue");
      what = "boolean `true`";
    } else if (ch == 0x66) {
      c.i++;
      c.ident("alse");
      what = "boolean `false`";
    } else if (ch == 0x2d || isDigit(ch)) {
      const start = c.i;
      c.number();
      if (!c.failed) {
        what = describeNumber(String.UTF8.decodeUnsafe(c.b.dataStart + <usize>start, <usize>(c.i - start)));
      }
    } else if (ch == 0x22) {
      const start = c.i;
      c.i++;
      c.string();
      if (!c.failed) what = "string " + debugQuote(c.decode(start + 1, c.i - 1));
    } else if (ch == 0x5b) {
      what = "sequence";
    } else if (ch == 0x7b) {
      what = "map";
    } else {
      c.failAt(EXPECTED_VALUE, c.i);
    }
    c.failIndex("invalid type: " + what + ", expected " + expected, c.i);
  }

  /** `deserialize_string` for field `k`; false after an error. */
  stringField(k: i32): bool {
    const c = this.c;
    c.whitespace();
    if (c.i == c.n) {
      c.failEof(EOF_VALUE);
      return false;
    }
    if (c.b[c.i] != 0x22) {
      this.invalidType("a string");
      return false;
    }
    const start = c.i;
    c.i++;
    c.string();
    if (c.failed) return false;
    this.p.values[k] = c.decode(start + 1, c.i - 1);
    this.p.present[k] = true;
    return true;
  }

  /** `visit_seq`: the fields in declaration order. */
  sequence(): void {
    const c = this.c;
    const names = this.names;
    for (let k = 0; k < names.length; k++) {
      // `has_next_element`
      c.whitespace();
      if (c.i == c.n) {
        c.failPeek(EOF_LIST);
        return;
      }
      const ch = c.b[c.i];
      if (ch == 0x5d) {
        const count = names.length;
        this.custom = "invalid length " + k.toString() + ", expected struct " + this.structName +
          " with " + count.toString() + (count == 1 ? " element" : " elements");
        return;
      }
      if (k > 0) {
        if (ch != 0x2c) {
          c.failPeek(EXPECTED_LIST_COMMA_OR_END);
          return;
        }
        c.i++;
        c.whitespace();
        if (c.i == c.n) {
          c.failPeek(EOF_VALUE);
          return;
        }
        if (c.b[c.i] == 0x5d) {
          c.failPeek(TRAILING_COMMA);
          return;
        }
      }
      if (!this.stringField(k)) return;
    }
  }

  /** `end_seq`. */
  endSeq(): void {
    const c = this.c;
    c.whitespace();
    if (c.i == c.n) {
      c.failPeek(EOF_LIST);
      return;
    }
    const ch = c.b[c.i];
    if (ch == 0x5d) {
      c.i++;
      return;
    }
    if (ch == 0x2c) {
      c.i++;
      c.whitespace();
      c.failPeek(c.i < c.n && c.b[c.i] == 0x5d ? TRAILING_COMMA : TRAILING_CHARACTERS);
      return;
    }
    c.failPeek(TRAILING_CHARACTERS);
  }

  expectedFields(): string {
    const names = this.names;
    if (names.length == 1) return "`" + names[0] + "`";
    return "`" + names[0] + "` or `" + names[1] + "`";
  }

  /** `visit_map` of the derived visitor. */
  map(): void {
    const c = this.c;
    const names = this.names;
    let first = true;
    for (;;) {
      // `has_next_key`
      c.whitespace();
      if (c.i == c.n) {
        c.failPeek(EOF_OBJECT);
        return;
      }
      const ch = c.b[c.i];
      if (ch == 0x7d) break;
      if (first) {
        first = false;
        if (ch != 0x22) {
          c.failPeek(KEY_MUST_BE_A_STRING);
          return;
        }
      } else if (ch == 0x2c) {
        c.i++;
        c.whitespace();
        if (c.i == c.n) {
          c.failPeek(EOF_VALUE);
          return;
        }
        const next = c.b[c.i];
        if (next == 0x7d) {
          c.failPeek(TRAILING_COMMA);
          return;
        }
        if (next != 0x22) {
          c.failPeek(KEY_MUST_BE_A_STRING);
          return;
        }
      } else {
        c.failPeek(EXPECTED_OBJECT_COMMA_OR_END);
        return;
      }
      // the key, as a field identifier
      const start = c.i;
      c.i++;
      c.string();
      if (c.failed) return;
      const key = c.decode(start + 1, c.i - 1);
      let k = -1;
      for (let j = 0; j < names.length; j++) {
        if (names[j] == key) k = j;
      }
      if (k < 0) {
        this.custom = "unknown field `" + key + "`, expected " + this.expectedFields();
        return;
      }
      if (this.p.present[k]) {
        this.custom = "duplicate field `" + names[k] + "`";
        return;
      }
      // `parse_object_colon`
      c.whitespace();
      if (c.i == c.n) {
        c.failPeek(EOF_OBJECT);
        return;
      }
      if (c.b[c.i] != 0x3a) {
        c.failPeek(EXPECTED_COLON);
        return;
      }
      c.i++;
      if (!this.stringField(k)) return;
    }
    for (let k = 0; k < names.length; k++) {
      if (!this.p.present[k]) {
        this.custom = "missing field `" + names[k] + "`";
        return;
      }
    }
  }

  /** `end_map`. */
  endMap(): void {
    const c = this.c;
    c.whitespace();
    if (c.i == c.n) {
      c.failPeek(EOF_OBJECT);
      return;
    }
    const ch = c.b[c.i];
    if (ch == 0x7d) {
      c.i++;
      return;
    }
    c.failPeek(ch == 0x2c ? TRAILING_COMMA : TRAILING_CHARACTERS);
  }

  /** `from_str::<Struct>`: the struct, then `Deserializer::end`. */
  read(): Payload {
    const c = this.c;
    c.whitespace();
    if (c.i == c.n) {
      c.failPeek(EOF_VALUE);
    } else {
      const ch = c.b[c.i];
      if (ch == 0x5b || ch == 0x7b) {
        c.i++;
        if (ch == 0x5b) this.sequence();
        else this.map();
        // `end_seq` / `end_map` run even after an error; theirs counts only
        // when the visitor succeeded.
        const earlier = c.failed || this.custom.length != 0;
        const saved = c.failed;
        if (ch == 0x5b) this.endSeq();
        else this.endMap();
        if (earlier && !saved) c.failed = false;
        if (!c.failed && this.custom.length != 0) c.failIndex(this.custom, c.i); // `fix_position`
      } else {
        this.invalidType("struct " + this.structName);
      }
      if (!c.failed) {
        c.whitespace();
        if (c.i < c.n) c.failPeek(TRAILING_CHARACTERS);
      }
    }
    const p = this.p;
    if (c.failed) {
      p.error = this.task + ": " + c.message + " at line " + c.line().toString() +
        " column " + c.column().toString();
    } else {
      p.ok = true;
    }
    return p;
  }
}

/** The string fields `names` of a payload, as the Rust swarm reads them. */
function fields(task: string, payloadText: string, names: string[], structName: string): Payload {
  return new PayloadReader(task, payloadText, names, structName).read();
}

// ---- the task types, in the Rust swarm's order ------------------------------

const ANALYZE_CODE_FIELDS: string[] = ["language", "source"];
const SOURCE_FIELDS: string[] = ["source"];
const TEXT_FIELDS: string[] = ["text"];

/** Run one task: text is the result JSON for OK, a human message for the errors (messages are informative, only the kind must match). */
export function analyze(taskType: string, payload: string): Outcome {
  if (taskType == "analyze_code") {
    const p = fields(taskType, payload, ANALYZE_CODE_FIELDS, "AnalyzeCode");
    if (!p.ok) return new Outcome(ANALYZER_INVALID_PAYLOAD, p.error);
    const language = parseLanguage(p.values[0]);
    if (language.length == 0) {
      return new Outcome(
        ANALYZER_INVALID_PAYLOAD,
        "unsupported language " + debugQuote(p.values[0]) + "; supported: " + LANGUAGE_NAMES.join(", "),
      );
    }
    return new Outcome(ANALYZER_OK, analyzeCode(language, p.values[1]));
  }
  if (taskType == "count_lines") {
    const p = fields(taskType, payload, SOURCE_FIELDS, "Source");
    if (!p.ok) return new Outcome(ANALYZER_INVALID_PAYLOAD, p.error);
    return new Outcome(ANALYZER_OK, countLines(p.values[0]));
  }
  if (taskType == "parse_json") {
    const p = fields(taskType, payload, TEXT_FIELDS, "Text");
    if (!p.ok) return new Outcome(ANALYZER_INVALID_PAYLOAD, p.error);
    return new Outcome(ANALYZER_OK, parseJson(p.values[0]));
  }
  if (taskType == "check_security") {
    const p = fields(taskType, payload, SOURCE_FIELDS, "Source");
    if (!p.ok) return new Outcome(ANALYZER_INVALID_PAYLOAD, p.error);
    return new Outcome(ANALYZER_OK, checkSecurity(p.values[0]));
  }
  return new Outcome(ANALYZER_UNKNOWN_TASK_TYPE, taskType);
}
