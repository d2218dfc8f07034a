"""`analyzer` in Python: the same four tasks as the Rust swarm in
`swarms/analyzer`, with byte-identical results (see docs/analyzer.md).

Written with the `chassis_swarm` helper (guest-sdk/python): one handler
per task type, each reading the raw payload text with its own strict
checker, so that a payload serde would refuse is refused here too.

Built into a component with componentize-py against the WIT world
`logging-swarm` (`cargo xtask build` does it):

    componentize-py -d wit -w logging-swarm componentize --stub-wasi \
        -p swarms/analyzer-py -p guest-sdk/python app \
        -o target/swarms/analyzer_py.wasm

`--stub-wasi` leaves the component with no WASI imports at all: it can
compute and log, nothing else.
"""

import json
import math

from chassis_swarm import InvalidPayload, Task, task  # noqa: F401 - Task is the export

# ---- text primitives, as Rust's `str` has them -------------------------

# `char::is_whitespace`: Unicode White_Space. Python's `str.strip()` would
# also remove U+001C..U+001F.
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def trim(s):
    """`str::trim`."""
    return s.strip(RUST_WHITESPACE)


def lines(s):
    """`str::lines`: split at `\\n` or `\\r\\n`; a final line ending is optional."""
    if s == "":
        return []
    parts = s.split("\n")
    out = [p[:-1] if p.endswith("\r") else p for p in parts[:-1]]
    if parts[-1] != "":
        out.append(parts[-1])
    return out


def ascii_lower(s):
    """`str::to_ascii_lowercase`: only A-Z change."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


# ---- analyze_code -------------------------------------------------------

LANGUAGES = {
    "python": "python",
    "py": "python",
    "rust": "rust",
    "rs": "rust",
    "javascript": "javascript",
    "js": "javascript",
    "go": "go",
    "golang": "go",
    "typescript": "typescript",
    "ts": "typescript",
}
LANGUAGE_NAMES = ["python", "rust", "javascript", "go", "typescript"]


def opens_block(code):
    """Whether a code line leaves a `/*` comment open at its end."""
    start = code.rfind("/*")
    if start < 0:
        return False
    return "*/" not in code[start + 2:] and "//" not in code[:start]


def analyze_code(language, source):
    line_count = blank = comment = code = 0
    in_block = False
    for line in lines(source):
        line_count += 1
        t = trim(line)
        if in_block:
            comment += 1
            end = t.find("*/")
            if end >= 0:
                in_block = False
                rest = trim(t[end + 2:])
                if rest != "" and not rest.startswith("//"):
                    # Code follows the end of the block comment on this line.
                    comment -= 1
                    code += 1
                    in_block = opens_block(rest)
            continue
        if t == "":
            blank += 1
            continue
        if language == "python":
            is_comment = t.startswith("#")
        elif t.startswith("//"):
            is_comment = True
        elif t.startswith("/*"):
            rest = t[2:]
            end = rest.find("*/")
            if end < 0:
                in_block = True
                is_comment = True
            else:
                after = trim(rest[end + 2:])
                is_comment = after == "" or after.startswith("//")
        else:
            in_block = opens_block(t)
            is_comment = False
        if is_comment:
            comment += 1
        else:
            code += 1
    return {
        "language": language,
        "line_count": line_count,
        "blank_lines": blank,
        "comment_lines": comment,
        "code_lines": code,
    }


# ---- count_lines --------------------------------------------------------


def count_lines(source):
    line_count = blank = non_blank = longest = 0
    for line in lines(source):
        line_count += 1
        if trim(line) == "":
            blank += 1
        else:
            non_blank += 1
        longest = max(longest, len(line))
    return {
        "line_count": line_count,
        "blank_lines": blank,
        "non_blank_lines": non_blank,
        "longest_line": longest,
    }


# ---- check_security -----------------------------------------------------

SQL_MESSAGE = "SELECT ... WHERE without a ? or $ placeholder: possible SQL injection"


def check_security(source):
    findings = []
    for i, line in enumerate(lines(source)):
        lower = ascii_lower(line)
        snippet = trim(line)[:120]
        if "select" in lower and "where" in lower and "?" not in line and "$" not in line:
            findings.append(
                {"kind": "sql_injection", "line": i + 1, "message": SQL_MESSAGE, "snippet": snippet}
            )
        for word in ("password", "secret"):
            if word in lower:
                findings.append(
                    {
                        "kind": "hardcoded_secret",
                        "line": i + 1,
                        "message": f'mentions "{word}": possible hard-coded secret',
                        "snippet": snippet,
                    }
                )
                break
    return {"issue_count": len(findings), "findings": findings}


# ---- parse_json: serde_json's grammar, limits, messages and positions ----

EOF_LIST = "EOF while parsing a list"
EOF_OBJECT = "EOF while parsing an object"
EOF_STRING = "EOF while parsing a string"
EOF_VALUE = "EOF while parsing a value"
DIGITS = b"0123456789"
HEX_DIGITS = b"0123456789abcdefABCDEF"
RECURSION_LIMIT = 128


class JsonFailure(Exception):
    def __init__(self, message, index):
        super().__init__(message)
        self.message = message
        # Bytes consumed when the error was raised (serde_json's position).
        self.index = index


class JsonChecker:
    """A validating reader over UTF-8 bytes, raising serde_json's errors."""

    def __init__(self, text):
        self.b = text.encode("utf-8", "surrogatepass")
        self.n = len(self.b)
        self.i = 0
        self.depth = 0

    def fail_at(self, message, pos):
        """The offending byte is at `pos`."""
        raise JsonFailure(message, pos + 1)

    def fail_eof(self, message):
        raise JsonFailure(message, self.n)

    def peek(self):
        return self.b[self.i] if self.i < self.n else None

    def whitespace(self):
        while self.i < self.n and self.b[self.i] in b" \n\t\r":
            self.i += 1

    def ident(self, rest):
        for expected in rest:
            if self.i == self.n:
                self.fail_eof(EOF_VALUE)
            c = self.b[self.i]
            self.i += 1
            if c != expected:
                self.fail_at("expected ident", self.i - 1)

    def hex4(self):
        i = self.i
        if self.n - i < 4:
            self.i = self.n
            self.fail_eof(EOF_STRING)
        quad = self.b[i:i + 4]
        self.i = i + 4
        if any(c not in HEX_DIGITS for c in quad):
            self.fail_at("invalid escape", i + 3)
        return int(quad, 16)

    def string(self):
        while True:
            i = self.i
            if i == self.n:
                self.fail_eof(EOF_STRING)
            c = self.b[i]
            if c == 0x22:
                self.i = i + 1
                return
            if c == 0x5C:
                self.i = i + 1
                if self.i == self.n:
                    self.fail_eof(EOF_STRING)
                e = self.b[self.i]
                self.i += 1
                if e in b'"\\/bfnrt':
                    continue
                if e != ord("u"):
                    self.fail_at("invalid escape", self.i - 1)
                u = self.hex4()
                if 0xDC00 <= u <= 0xDFFF:
                    self.fail_at("lone leading surrogate in hex escape", self.i - 1)
                if 0xD800 <= u <= 0xDBFF:
                    for expected in (0x5C, ord("u")):
                        if self.i == self.n:
                            self.fail_eof(EOF_STRING)
                        if self.b[self.i] != expected:
                            self.fail_at("unexpected end of hex escape", self.i)
                        self.i += 1
                    low = self.hex4()
                    if not 0xDC00 <= low <= 0xDFFF:
                        self.fail_at("lone leading surrogate in hex escape", self.i - 1)
                continue
            if c < 0x20:
                self.fail_at("control character (\\u0000-\\u001F) found while parsing a string", i)
            self.i = i + 1

    def number(self):
        b, n = self.b, self.n
        start = self.i
        if b[self.i] == ord("-"):
            self.i += 1
        if self.i == n:
            self.fail_eof(EOF_VALUE)
        c = b[self.i]
        self.i += 1
        mantissa_nonzero = False
        if c == ord("0"):
            if self.i < n and b[self.i] in DIGITS:
                self.fail_at("invalid number", self.i)
        elif c in b"123456789":
            mantissa_nonzero = True
            while self.i < n and b[self.i] in DIGITS:
                self.i += 1
        else:
            self.fail_at("invalid number", self.i - 1)
        if self.i < n and b[self.i] == ord("."):
            self.i += 1
            if self.i == n:
                self.fail_eof(EOF_VALUE)
            if b[self.i] not in DIGITS:
                self.fail_at("invalid number", self.i)
            while self.i < n and b[self.i] in DIGITS:
                if b[self.i] != ord("0"):
                    mantissa_nonzero = True
                self.i += 1
        if self.i < n and b[self.i] in b"eE":
            self.i += 1
            negative = False
            if self.i < n and b[self.i] in b"+-":
                negative = b[self.i] == ord("-")
                self.i += 1
            if self.i == n:
                self.fail_eof(EOF_VALUE)
            c = b[self.i]
            self.i += 1
            if c not in DIGITS:
                self.fail_at("invalid number", self.i - 1)
            exponent = c - 48
            while self.i < n and b[self.i] in DIGITS:
                d = b[self.i] - 48
                self.i += 1
                # serde_json stops reading an exponent that overflows i32.
                if exponent > 214748364 or (exponent == 214748364 and d > 7):
                    if mantissa_nonzero and not negative:
                        self.fail_at("number out of range", self.i - 1)
                    while self.i < n and b[self.i] in DIGITS:
                        self.i += 1
                    return
                exponent = exponent * 10 + d
        if math.isinf(float(b[start:self.i].decode())):
            self.fail_at("number out of range", self.i - 1)

    def value(self):
        self.whitespace()
        i = self.i
        if i == self.n:
            self.fail_eof(EOF_VALUE)
        c = self.b[i]
        if c == ord("n"):
            self.i += 1
            self.ident(b"ull")
            return "null"
        if c == ord("t"):
            self.i += 1
            self.ident(b"rue")
            return "bool"
        if c == ord("f"):
            self.i += 1
            self.ident(b"alse")
            return "bool"
        if c == ord("-") or c in DIGITS:
            self.number()
            return "number"
        if c == 0x22:
            self.i += 1
            self.string()
            return "string"
        if c in b"[{":
            self.depth += 1
            if self.depth >= RECURSION_LIMIT:
                self.fail_at("recursion limit exceeded", i)
            self.i += 1
            if c == ord("["):
                self.array()
            else:
                self.object()
            self.depth -= 1
            return "array" if c == ord("[") else "object"
        self.fail_at("expected value", i)

    def array(self):
        first = True
        while True:
            self.whitespace()
            if self.i == self.n:
                self.fail_eof(EOF_LIST)
            c = self.b[self.i]
            if c == ord("]"):
                self.i += 1
                return
            if first:
                first = False
            elif c == ord(","):
                self.i += 1
                self.whitespace()
                if self.i == self.n:
                    self.fail_eof(EOF_VALUE)
                if self.b[self.i] == ord("]"):
                    self.fail_at("trailing comma", self.i)
            else:
                self.fail_at("expected `,` or `]`", self.i)
            self.value()

    def object(self):
        first = True
        while True:
            self.whitespace()
            if self.i == self.n:
                self.fail_eof(EOF_OBJECT)
            c = self.b[self.i]
            if c == ord("}"):
                self.i += 1
                return
            if first:
                first = False
                if c != 0x22:
                    self.fail_at("key must be a string", self.i)
            elif c == ord(","):
                self.i += 1
                self.whitespace()
                if self.i == self.n:
                    self.fail_eof(EOF_VALUE)
                if self.b[self.i] == ord("}"):
                    self.fail_at("trailing comma", self.i)
                if self.b[self.i] != 0x22:
                    self.fail_at("key must be a string", self.i)
            else:
                self.fail_at("expected `,` or `}`", self.i)
            self.i += 1
            self.string()
            self.whitespace()
            if self.i == self.n:
                self.fail_eof(EOF_OBJECT)
            if self.b[self.i] != ord(":"):
                self.fail_at("expected `:`", self.i)
            self.i += 1
            self.value()

    def document(self):
        """The kind of the one JSON document in the text, or `JsonFailure`."""
        kind = self.value()
        self.whitespace()
        if self.i < self.n:
            self.fail_at("trailing characters", self.i)
        return kind


def json_failure(text):
    """`None` if `text` is one valid JSON document, else the failure."""
    try:
        JsonChecker(text).document()
        return None
    except JsonFailure as f:
        return f


def parse_json(text):
    checker = JsonChecker(text)
    try:
        kind = checker.document()
        return {"valid": True, "kind": kind}
    except JsonFailure as f:
        b, i = checker.b, f.index
        line = 1 + b[:i].count(b"\n")
        column = i - (b.rfind(b"\n", 0, i) + 1)
        return {"valid": False, "error": {"message": f.message, "line": line, "column": column}}


# ---- payloads: serde's derived struct decoding, deny_unknown_fields -------


class Members(list):
    """An object's members in document order, duplicates kept."""


def fields(payload_text, names):
    """The string fields `names` of a payload, as the Rust swarm reads them."""
    failure = json_failure(payload_text)
    if failure is not None:
        raise InvalidPayload(failure.message)
    value = json.loads(payload_text, object_pairs_hook=Members)
    if isinstance(value, Members):
        seen = {}
        for key, v in value:
            if key not in names:
                raise InvalidPayload(f"unknown field `{key}`, expected one of {names}")
            if key in seen:
                raise InvalidPayload(f"duplicate field `{key}`")
            if not isinstance(v, str):
                raise InvalidPayload(f"invalid type for `{key}`: expected a string")
            seen[key] = v
        for name in names:
            if name not in seen:
                raise InvalidPayload(f"missing field `{name}`")
        return [seen[name] for name in names]
    if isinstance(value, list):
        for i, name in enumerate(names):
            if i == len(value):
                raise InvalidPayload(f"invalid length {i}, expected {len(names)} fields")
            if not isinstance(value[i], str):
                raise InvalidPayload(f"invalid type for `{name}`: expected a string")
        if len(value) > len(names):
            raise InvalidPayload("trailing characters")
        return value
    raise InvalidPayload("invalid type: expected a struct")


# ---- the task types, in the Rust swarm's order ----------------------------


@task("analyze_code", raw=True)
def analyze_code_task(payload_text):
    language, source = fields(payload_text, ["language", "source"])
    canonical = LANGUAGES.get(ascii_lower(language))
    if canonical is None:
        raise InvalidPayload(
            f"unsupported language {json.dumps(language, ensure_ascii=False)}; "
            f"supported: {', '.join(LANGUAGE_NAMES)}"
        )
    return analyze_code(canonical, source)


@task("count_lines", raw=True)
def count_lines_task(payload_text):
    (source,) = fields(payload_text, ["source"])
    return count_lines(source)


@task("parse_json", raw=True)
def parse_json_task(payload_text):
    (text,) = fields(payload_text, ["text"])
    return parse_json(text)


@task("check_security", raw=True)
def check_security_task(payload_text):
    (source,) = fields(payload_text, ["source"])
    return check_security(source)
