// `analyzer` in TypeScript: the same four tasks as the Rust swarm in
// `swarms/analyzer`, with byte-identical results (see docs/analyzer.md).
//
// Written with the `chassis-swarm.js` helper (guest-sdk/js): one handler per
// task type, each reading the raw payload text with its own strict checker,
// so that a payload serde would refuse is refused here too.
//
// Built into a component with `chassis build` (jco's declarations of the WIT,
// `tsc`, then componentize-js against the WIT world `logging-swarm`), every
// WASI feature disabled (`cargo xtask build` runs it): the component can
// compute and log, nothing else.

import { InvalidPayload, swarm } from "./chassis/chassis-swarm.js";

// ---- text primitives, as Rust's `str` has them ----------------------------

// `char::is_whitespace`: Unicode White_Space. JavaScript's `trim()` differs:
// it also removes U+FEFF and keeps U+0085.
const RUST_WHITESPACE = new Set<number>(
  [
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002,
    0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029,
    0x202f, 0x205f, 0x3000,
  ],
);

/** `str::trim` (all whitespace code points are in the BMP). */
function trim(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && RUST_WHITESPACE.has(s.charCodeAt(start))) start++;
  while (end > start && RUST_WHITESPACE.has(s.charCodeAt(end - 1))) end--;
  return s.slice(start, end);
}

/** `str::lines`: split at `\n` or `\r\n`; a final line ending is optional. */
function lines(s: string): string[] {
  if (s === "") return [];
  const parts = s.split("\n");
  const out = parts.slice(0, -1).map((p) => (p.endsWith("\r") ? p.slice(0, -1) : p));
  const last = parts[parts.length - 1];
  if (last !== "") out.push(last);
  return out;
}

/** `chars().count()`: Unicode scalar values, not UTF-16 units. */
function charCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** The first `n` characters (scalar values) of `s`. */
function takeChars(s: string, n: number): string {
  let out = "";
  let i = 0;
  for (const c of s) {
    if (i++ === n) break;
    out += c;
  }
  return out;
}

/** `str::to_ascii_lowercase`: only A-Z change. */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

// ---- analyze_code -------------------------------------------------------

type Canonical = "python" | "rust" | "javascript" | "go" | "typescript";

interface CodeAnalysis {
  language: Canonical;
  line_count: number;
  blank_lines: number;
  comment_lines: number;
  code_lines: number;
}

const LANGUAGES: Record<string, Canonical> = {
  python: "python",
  py: "python",
  rust: "rust",
  rs: "rust",
  javascript: "javascript",
  js: "javascript",
  go: "go",
  golang: "go",
  typescript: "typescript",
  ts: "typescript",
};
const LANGUAGE_NAMES: Canonical[] = ["python", "rust", "javascript", "go", "typescript"];

/** Whether a code line leaves a `/*` comment open at its end. */
function opensBlock(code: string): boolean {
  const start = code.lastIndexOf("/*");
  if (start < 0) return false;
  return !code.slice(start + 2).includes("*/") && !code.slice(0, start).includes("//");
}

function analyzeCode(language: Canonical, source: string): CodeAnalysis {
  let lineCount = 0;
  let blank = 0;
  let comment = 0;
  let code = 0;
  let inBlock = false;
  for (const line of lines(source)) {
    lineCount++;
    const t = trim(line);
    if (inBlock) {
      comment++;
      const end = t.indexOf("*/");
      if (end >= 0) {
        inBlock = false;
        const rest = trim(t.slice(end + 2));
        if (rest !== "" && !rest.startsWith("//")) {
          // Code follows the end of the block comment on this line.
          comment--;
          code++;
          inBlock = opensBlock(rest);
        }
      }
      continue;
    }
    if (t === "") {
      blank++;
      continue;
    }
    let isComment: boolean;
    if (language === "python") {
      isComment = t.startsWith("#");
    } else if (t.startsWith("//")) {
      isComment = true;
    } else if (t.startsWith("/*")) {
      const rest = t.slice(2);
      const end = rest.indexOf("*/");
      if (end < 0) {
        inBlock = true;
        isComment = true;
      } else {
        const after = trim(rest.slice(end + 2));
        isComment = after === "" || after.startsWith("//");
      }
    } else {
      inBlock = opensBlock(t);
      isComment = false;
    }
    if (isComment) comment++;
    else code++;
  }
  return {
    language,
    line_count: lineCount,
    blank_lines: blank,
    comment_lines: comment,
    code_lines: code,
  };
}

// ---- count_lines --------------------------------------------------------

interface LineCounts {
  line_count: number;
  blank_lines: number;
  non_blank_lines: number;
  longest_line: number;
}

function countLines(source: string): LineCounts {
  let lineCount = 0;
  let blank = 0;
  let nonBlank = 0;
  let longest = 0;
  for (const line of lines(source)) {
    lineCount++;
    if (trim(line) === "") blank++;
    else nonBlank++;
    longest = Math.max(longest, charCount(line));
  }
  return {
    line_count: lineCount,
    blank_lines: blank,
    non_blank_lines: nonBlank,
    longest_line: longest,
  };
}

// ---- check_security -----------------------------------------------------

interface Finding {
  kind: "sql_injection" | "hardcoded_secret";
  line: number;
  message: string;
  snippet: string;
}

interface SecurityReport {
  issue_count: number;
  findings: Finding[];
}

const SQL_MESSAGE = "SELECT ... WHERE without a ? or $ placeholder: possible SQL injection";

function checkSecurity(source: string): SecurityReport {
  const findings: Finding[] = [];
  lines(source).forEach((line, i) => {
    const lower = asciiLower(line);
    const snippet = takeChars(trim(line), 120);
    if (lower.includes("select") && lower.includes("where") && !line.includes("?") && !line.includes("$")) {
      findings.push({ kind: "sql_injection", line: i + 1, message: SQL_MESSAGE, snippet });
    }
    for (const word of ["password", "secret"]) {
      if (lower.includes(word)) {
        findings.push({
          kind: "hardcoded_secret",
          line: i + 1,
          message: `mentions "${word}": possible hard-coded secret`,
          snippet,
        });
        break;
      }
    }
  });
  return { issue_count: findings.length, findings };
}

// ---- parse_json: serde_json's grammar, limits, messages and positions ------

type JsonKind = "null" | "bool" | "number" | "string" | "array" | "object";

interface JsonError {
  message: string;
  line: number;
  column: number;
}

interface JsonValid {
  valid: true;
  kind: JsonKind;
}

interface JsonInvalid {
  valid: false;
  error: JsonError;
}

type JsonReport = JsonValid | JsonInvalid;

const EOF_LIST = "EOF while parsing a list";
const EOF_OBJECT = "EOF while parsing an object";
const EOF_STRING = "EOF while parsing a string";
const EOF_VALUE = "EOF while parsing a value";
const RECURSION_LIMIT = 128;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isHex = (c: number): boolean => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

class JsonFailure {
  message: string;
  index: number;

  constructor(message: string, index: number) {
    this.message = message;
    // Bytes consumed when the error was raised (serde_json's position).
    this.index = index;
  }
}

/** A validating reader over UTF-8 bytes, throwing serde_json's errors. */
class JsonChecker {
  b: Uint8Array;
  n: number;
  i: number;
  depth: number;
  topKeys: string[];

  constructor(text: string) {
    this.b = new TextEncoder().encode(text);
    this.n = this.b.length;
    this.i = 0;
    this.depth = 0;
    /** Keys of the top-level object, decoded, in document order. */
    this.topKeys = [];
  }

  failAt(message: string, pos: number): never {
    throw new JsonFailure(message, pos + 1);
  }

  failEof(message: string): never {
    throw new JsonFailure(message, this.n);
  }

  whitespace(): void {
    while (this.i < this.n) {
      const c = this.b[this.i];
      if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) break;
      this.i++;
    }
  }

  ident(rest: string): void {
    for (const expected of rest) {
      if (this.i === this.n) this.failEof(EOF_VALUE);
      const c = this.b[this.i++];
      if (c !== expected.charCodeAt(0)) this.failAt("expected ident", this.i - 1);
    }
  }

  hex4(): number {
    const i = this.i;
    if (this.n - i < 4) {
      this.i = this.n;
      this.failEof(EOF_STRING);
    }
    this.i = i + 4;
    let value = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.b[i + k];
      if (!isHex(c)) this.failAt("invalid escape", i + 3);
      value = value * 16 + parseInt(String.fromCharCode(c), 16);
    }
    return value;
  }

  string(): void {
    for (;;) {
      const i = this.i;
      if (i === this.n) this.failEof(EOF_STRING);
      const c = this.b[i];
      if (c === 0x22) {
        this.i = i + 1;
        return;
      }
      if (c === 0x5c) {
        this.i = i + 1;
        if (this.i === this.n) this.failEof(EOF_STRING);
        const e = this.b[this.i++];
        if ('"\\/bfnrt'.includes(String.fromCharCode(e))) continue;
        if (e !== 0x75) this.failAt("invalid escape", this.i - 1);
        const u = this.hex4();
        if (u >= 0xdc00 && u <= 0xdfff) this.failAt("lone leading surrogate in hex escape", this.i - 1);
        if (u >= 0xd800 && u <= 0xdbff) {
          for (const expected of [0x5c, 0x75]) {
            if (this.i === this.n) this.failEof(EOF_STRING);
            if (this.b[this.i] !== expected) this.failAt("unexpected end of hex escape", this.i);
            this.i++;
          }
          const low = this.hex4();
          if (!(low >= 0xdc00 && low <= 0xdfff)) {
            this.failAt("lone leading surrogate in hex escape", this.i - 1);
          }
        }
        continue;
      }
      if (c < 0x20) {
        this.failAt("control character (\\u0000-\\u001F) found while parsing a string", i);
      }
      this.i = i + 1;
    }
  }

  number(): void {
    const b = this.b;
    const n = this.n;
    const start = this.i;
    if (b[this.i] === 0x2d) this.i++;
    if (this.i === n) this.failEof(EOF_VALUE);
    let c = b[this.i++];
    let mantissaNonzero = false;
    if (c === 0x30) {
      if (this.i < n && isDigit(b[this.i])) this.failAt("invalid number", this.i);
    } else if (c >= 0x31 && c <= 0x39) {
      mantissaNonzero = true;
      while (this.i < n && isDigit(b[this.i])) this.i++;
    } else {
      this.failAt("invalid number", this.i - 1);
    }
    if (this.i < n && b[this.i] === 0x2e) {
      this.i++;
      if (this.i === n) this.failEof(EOF_VALUE);
      if (!isDigit(b[this.i])) this.failAt("invalid number", this.i);
      while (this.i < n && isDigit(b[this.i])) {
        if (b[this.i] !== 0x30) mantissaNonzero = true;
        this.i++;
      }
    }
    if (this.i < n && (b[this.i] === 0x65 || b[this.i] === 0x45)) {
      this.i++;
      let negative = false;
      if (this.i < n && (b[this.i] === 0x2b || b[this.i] === 0x2d)) {
        negative = b[this.i] === 0x2d;
        this.i++;
      }
      if (this.i === n) this.failEof(EOF_VALUE);
      c = b[this.i++];
      if (!isDigit(c)) this.failAt("invalid number", this.i - 1);
      let exponent = c - 48;
      while (this.i < n && isDigit(b[this.i])) {
        const d = b[this.i++] - 48;
        // serde_json stops reading an exponent that overflows i32.
        if (exponent > 214748364 || (exponent === 214748364 && d > 7)) {
          if (mantissaNonzero && !negative) this.failAt("number out of range", this.i - 1);
          while (this.i < n && isDigit(b[this.i])) this.i++;
          return;
        }
        exponent = exponent * 10 + d;
      }
    }
    const text = new TextDecoder().decode(b.subarray(start, this.i));
    if (!Number.isFinite(Number(text))) this.failAt("number out of range", this.i - 1);
  }

  value(): JsonKind {
    this.whitespace();
    const i = this.i;
    if (i === this.n) this.failEof(EOF_VALUE);
    const c = this.b[i];
    if (c === 0x6e) {
      this.i++;
      this.ident("ull");
      return "null";
    }
    if (c === 0x74) {
      this.i++;
      this.ident("rue");
      return "bool";
    }
    if (c === 0x66) {
      this.i++;
      this.ident("alse");
      return "bool";
    }
    if (c === 0x2d || isDigit(c)) {
      this.number();
      return "number";
    }
    if (c === 0x22) {
      this.i++;
      this.string();
      return "string";
    }
    if (c === 0x5b || c === 0x7b) {
      this.depth++;
      if (this.depth >= RECURSION_LIMIT) this.failAt("recursion limit exceeded", i);
      this.i++;
      if (c === 0x5b) this.array();
      else this.object();
      this.depth--;
      return c === 0x5b ? "array" : "object";
    }
    this.failAt("expected value", i);
  }

  array(): void {
    let first = true;
    for (;;) {
      this.whitespace();
      if (this.i === this.n) this.failEof(EOF_LIST);
      const c = this.b[this.i];
      if (c === 0x5d) {
        this.i++;
        return;
      }
      if (first) {
        first = false;
      } else if (c === 0x2c) {
        this.i++;
        this.whitespace();
        if (this.i === this.n) this.failEof(EOF_VALUE);
        if (this.b[this.i] === 0x5d) this.failAt("trailing comma", this.i);
      } else {
        this.failAt("expected `,` or `]`", this.i);
      }
      this.value();
    }
  }

  object(): void {
    let first = true;
    for (;;) {
      this.whitespace();
      if (this.i === this.n) this.failEof(EOF_OBJECT);
      const c = this.b[this.i];
      if (c === 0x7d) {
        this.i++;
        return;
      }
      if (first) {
        first = false;
        if (c !== 0x22) this.failAt("key must be a string", this.i);
      } else if (c === 0x2c) {
        this.i++;
        this.whitespace();
        if (this.i === this.n) this.failEof(EOF_VALUE);
        if (this.b[this.i] === 0x7d) this.failAt("trailing comma", this.i);
        if (this.b[this.i] !== 0x22) this.failAt("key must be a string", this.i);
      } else {
        this.failAt("expected `,` or `}`", this.i);
      }
      const keyStart = this.i;
      this.i++;
      this.string();
      if (this.depth === 1) {
        this.topKeys.push(JSON.parse(new TextDecoder().decode(this.b.subarray(keyStart, this.i))) as string);
      }
      this.whitespace();
      if (this.i === this.n) this.failEof(EOF_OBJECT);
      if (this.b[this.i] !== 0x3a) this.failAt("expected `:`", this.i);
      this.i++;
      this.value();
    }
  }

  /** The kind of the one JSON document in the text; throws `JsonFailure`. */
  document(): JsonKind {
    const kind = this.value();
    this.whitespace();
    if (this.i < this.n) this.failAt("trailing characters", this.i);
    return kind;
  }
}

function parseJson(text: string): JsonReport {
  const checker = new JsonChecker(text);
  try {
    return { valid: true, kind: checker.document() };
  } catch (f) {
    if (!(f instanceof JsonFailure)) throw f;
    const b = checker.b;
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < f.index; k++) {
      if (b[k] === 0x0a) {
        line++;
        lineStart = k + 1;
      }
    }
    return { valid: false, error: { message: f.message, line, column: f.index - lineStart } };
  }
}

// ---- payloads: serde's derived struct decoding, deny_unknown_fields --------

/** The string fields `names` of a payload, as the Rust swarm reads them. */
function fields(payloadText: string, names: string[]): string[] {
  const checker = new JsonChecker(payloadText);
  try {
    checker.document();
  } catch (f) {
    if (f instanceof JsonFailure) throw new InvalidPayload(f.message);
    throw f;
  }
  const value: unknown = JSON.parse(payloadText);
  if (Array.isArray(value)) {
    names.forEach((name, i) => {
      if (i === value.length) {
        throw new InvalidPayload(`invalid length ${i}, expected ${names.length} fields`);
      }
      if (typeof value[i] !== "string") {
        throw new InvalidPayload(`invalid type for \`${name}\`: expected a string`);
      }
    });
    if (value.length > names.length) throw new InvalidPayload("trailing characters");
    return value as string[];
  }
  if (value === null || typeof value !== "object") {
    throw new InvalidPayload("invalid type: expected a struct");
  }
  const seen = new Set<string>();
  for (const key of checker.topKeys) {
    if (!names.includes(key)) {
      throw new InvalidPayload(`unknown field \`${key}\`, expected one of ${names.join(", ")}`);
    }
    if (seen.has(key)) throw new InvalidPayload(`duplicate field \`${key}\``);
    if (typeof (value as Record<string, unknown>)[key] !== "string") {
      throw new InvalidPayload(`invalid type for \`${key}\`: expected a string`);
    }
    seen.add(key);
  }
  for (const name of names) {
    if (!seen.has(name)) throw new InvalidPayload(`missing field \`${name}\``);
  }
  return names.map((name) => (value as Record<string, unknown>)[name] as string);
}

// ---- the task types, in the Rust swarm's order ------------------------------

export const task = swarm({
  analyze_code: {
    raw: true,
    run(payloadText: string) {
      const [language, source] = fields(payloadText, ["language", "source"]);
      const canonical = Object.hasOwn(LANGUAGES, asciiLower(language))
        ? LANGUAGES[asciiLower(language)]
        : undefined;
      if (canonical === undefined) {
        throw new InvalidPayload(
          `unsupported language ${JSON.stringify(language)}; supported: ${LANGUAGE_NAMES.join(", ")}`,
        );
      }
      return analyzeCode(canonical, source);
    },
  },
  count_lines: { raw: true, run: (payloadText: string) => countLines(fields(payloadText, ["source"])[0]) },
  parse_json: { raw: true, run: (payloadText: string) => parseJson(fields(payloadText, ["text"])[0]) },
  check_security: {
    raw: true,
    run: (payloadText: string) => checkSecurity(fields(payloadText, ["source"])[0]),
  },
});
