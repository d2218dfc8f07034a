/* analyzer in C: the same four tasks as the Rust swarm in `swarms/analyzer`,
   with byte-identical results (see docs/analyzer.md, the specification).
   The structure follows the TypeScript port (`swarms/analyzer-ts/app.ts`).

   Everything works on UTF-8 bytes; code points are decoded only where the
   specification counts characters or checks Unicode whitespace. The payload
   is decoded by a reader that mirrors serde's derived struct decoding with
   serde_json (order of checks, messages, positions); `parse_json` uses the
   validator of section 7.5. Nesting is bounded (127 levels), so the bounded
   recursion of the validator is safe; every other loop is linear. */

#include "analyzer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned char u8;

#define NPOS ((size_t)-1)

const char *const ANALYZER_TASK_TYPES[] = {"analyze_code", "count_lines", "parse_json",
                                           "check_security"};
const size_t ANALYZER_TASK_TYPE_COUNT = sizeof ANALYZER_TASK_TYPES / sizeof ANALYZER_TASK_TYPES[0];

/* ---- growable byte buffer (abort on allocation failure) ------------------ */

typedef struct {
    char *p;
    size_t len, cap;
} buf;

static void buf_reserve(buf *b, size_t extra) {
    if (extra > SIZE_MAX - 1 - b->len) abort();
    size_t need = b->len + extra + 1; /* room for a NUL */
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p) abort();
    b->p = p;
    b->cap = cap;
}

static void buf_put(buf *b, const void *s, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_putc(buf *b, char c) { buf_put(b, &c, 1); }

static void buf_puts(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_uint(buf *b, uint64_t v) {
    char tmp[24];
    size_t k = sizeof tmp;
    do {
        tmp[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_put(b, tmp + k, sizeof tmp - k);
}

static void buf_free(buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* A JSON string as serde_json writes it: only `"`, `\` and U+0000-U+001F are
   escaped (short forms where JSON has them, else \u00xx in lowercase). */
static void buf_json_str(buf *b, const u8 *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        u8 c = s[i];
        if (c != '"' && c != '\\' && c >= 0x20) continue;
        buf_put(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\f': buf_puts(b, "\\f"); break;
        case '\r': buf_puts(b, "\\r"); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_put(b, e, 6);
        }
        }
    }
    buf_put(b, s + run, n - run);
    buf_putc(b, '"');
}

static void buf_json_cstr(buf *b, const char *s) { buf_json_str(b, (const u8 *)s, strlen(s)); }

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Whether s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static int utf8_valid(const u8 *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        u8 c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        u8 lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return 0;
        if (n - i < len) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

/* Decode the character at s (n > 0 bytes left); *len gets its size. Never
   reads past n, whatever the bytes are. */
static uint32_t utf8_decode(const u8 *s, size_t n, size_t *len) {
    u8 c = s[0];
    if (c < 0xC0 || n < 2) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (c < 0xF0 || n < 4) {
        if (n < 3) {
            *len = 1;
            return c;
        }
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

static void buf_utf8(buf *b, uint32_t cp) {
    u8 e[4];
    size_t n;
    if (cp < 0x80) {
        e[0] = (u8)cp;
        n = 1;
    } else if (cp < 0x800) {
        e[0] = (u8)(0xC0 | (cp >> 6));
        e[1] = (u8)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        e[0] = (u8)(0xE0 | (cp >> 12));
        e[1] = (u8)(0x80 | ((cp >> 6) & 0x3F));
        e[2] = (u8)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        e[0] = (u8)(0xF0 | (cp >> 18));
        e[1] = (u8)(0x80 | ((cp >> 12) & 0x3F));
        e[2] = (u8)(0x80 | ((cp >> 6) & 0x3F));
        e[3] = (u8)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(b, e, n);
}

/* ---- text primitives, as Rust's `str` has them ---------------------------- */

/* `char::is_whitespace`: Unicode White_Space (25 code points). */
static int rust_ws(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return 0;
    if (c == 0x85 || c == 0xA0 || c == 0x1680) return 1;
    if (c >= 0x2000 && c <= 0x200A) return 1;
    return c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* `str::trim` on s[*a..*b): narrows the range. */
static void trim(const u8 *s, size_t *a, size_t *b) {
    size_t i = *a, j = *b, len;
    while (i < j) {
        if (!rust_ws(utf8_decode(s + i, j - i, &len))) break;
        i += len;
    }
    while (j > i) {
        size_t k = j - 1;
        while (k > i && (s[k] & 0xC0) == 0x80) k--;
        if (!rust_ws(utf8_decode(s + k, j - k, &len))) break;
        j = k;
    }
    *a = i;
    *b = j;
}

/* `chars().count()`: every byte that does not continue a character. */
static size_t char_count(const u8 *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += (s[i] & 0xC0) != 0x80;
    return c;
}

/* Byte length of the first `count` characters of s[0..n). */
static size_t take_chars(const u8 *s, size_t n, size_t count) {
    size_t i = 0;
    while (i < n && count) {
        i++;
        while (i < n && (s[i] & 0xC0) == 0x80) i++;
        count--;
    }
    return i;
}

static u8 ascii_lower(u8 c) { return c >= 'A' && c <= 'Z' ? (u8)(c + 32) : c; }

/* Plain substring search; NPOS when absent. With `fold`, the haystack is
   compared after `to_ascii_lowercase` (the needle is lowercase already). */
static size_t find_ex(const u8 *h, size_t n, const char *needle, int fold) {
    size_t m = strlen(needle);
    if (m > n) return NPOS;
    for (size_t i = 0; i + m <= n; i++) {
        size_t k = 0;
        while (k < m && (fold ? ascii_lower(h[i + k]) : h[i + k]) == (u8)needle[k]) k++;
        if (k == m) return i;
    }
    return NPOS;
}

static size_t find(const u8 *h, size_t n, const char *needle) { return find_ex(h, n, needle, 0); }

/* Last occurrence of a two-byte needle. */
static size_t rfind2(const u8 *h, size_t n, const char *needle) {
    for (size_t i = n; i >= 2; i--)
        if (h[i - 2] == (u8)needle[0] && h[i - 1] == (u8)needle[1]) return i - 2;
    return NPOS;
}

static int starts_with(const u8 *s, size_t n, const char *prefix) {
    size_t m = strlen(prefix);
    return n >= m && memcmp(s, prefix, m) == 0;
}

/* `str::lines`: split at `\n` or `\r\n`; a final line ending is optional. */
typedef struct {
    const u8 *s;
    size_t n, pos;
} lines_iter;

static int next_line(lines_iter *it, size_t *start, size_t *end) {
    if (it->pos >= it->n) return 0;
    const u8 *nl = memchr(it->s + it->pos, '\n', it->n - it->pos);
    *start = it->pos;
    if (!nl) {
        *end = it->pos = it->n;
        return 1;
    }
    size_t e = (size_t)(nl - it->s);
    it->pos = e + 1;
    if (e > *start && it->s[e - 1] == '\r') e--;
    *end = e;
    return 1;
}

/* ---- analyze_code ----------------------------------------------------------- */

static const char *const LANGUAGE_ALIASES[][2] = {
    {"python", "python"},         {"py", "python"}, {"rust", "rust"}, {"rs", "rust"},
    {"javascript", "javascript"}, {"js", "javascript"}, {"go", "go"}, {"golang", "go"},
    {"typescript", "typescript"}, {"ts", "typescript"},
};

/* The canonical name for a language name (ASCII case-insensitive), or NULL. */
static const char *parse_language(const u8 *s, size_t n) {
    for (size_t k = 0; k < sizeof LANGUAGE_ALIASES / sizeof LANGUAGE_ALIASES[0]; k++) {
        const char *a = LANGUAGE_ALIASES[k][0];
        if (strlen(a) != n) continue;
        size_t i = 0;
        while (i < n && ascii_lower(s[i]) == (u8)a[i]) i++;
        if (i == n) return LANGUAGE_ALIASES[k][1];
    }
    return NULL;
}

/* Whether a code line leaves a `/ *` comment open at its end. */
static int opens_block(const u8 *code, size_t n) {
    size_t start = rfind2(code, n, "/*");
    if (start == NPOS) return 0;
    return find(code + start + 2, n - start - 2, "*/") == NPOS && find(code, start, "//") == NPOS;
}

static void analyze_code(buf *out, const char *language, const u8 *s, size_t n) {
    size_t line_count = 0, blank = 0, comment = 0, code = 0;
    int in_block = 0, python = strcmp(language, "python") == 0;
    lines_iter it = {s, n, 0};
    size_t ls, le;
    while (next_line(&it, &ls, &le)) {
        line_count++;
        size_t a = ls, e = le;
        trim(s, &a, &e);
        const u8 *t = s + a;
        size_t tn = e - a;
        if (in_block) {
            comment++;
            size_t end = find(t, tn, "*/");
            if (end != NPOS) {
                in_block = 0;
                size_t ra = a + end + 2, re = e;
                trim(s, &ra, &re);
                if (re > ra && !starts_with(s + ra, re - ra, "//")) {
                    /* Code follows the end of the block comment on this line. */
                    comment--;
                    code++;
                    in_block = opens_block(s + ra, re - ra);
                }
            }
            continue;
        }
        if (tn == 0) {
            blank++;
            continue;
        }
        int is_comment;
        if (python) {
            is_comment = t[0] == '#';
        } else if (starts_with(t, tn, "//")) {
            is_comment = 1;
        } else if (starts_with(t, tn, "/*")) {
            size_t end = find(t + 2, tn - 2, "*/");
            if (end == NPOS) {
                in_block = 1;
                is_comment = 1;
            } else {
                size_t aa = a + 2 + end + 2, ae = e;
                trim(s, &aa, &ae);
                is_comment = ae == aa || starts_with(s + aa, ae - aa, "//");
            }
        } else {
            in_block = opens_block(t, tn);
            is_comment = 0;
        }
        if (is_comment) comment++;
        else code++;
    }
    buf_puts(out, "{\"language\":");
    buf_json_cstr(out, language);
    buf_puts(out, ",\"line_count\":");
    buf_uint(out, line_count);
    buf_puts(out, ",\"blank_lines\":");
    buf_uint(out, blank);
    buf_puts(out, ",\"comment_lines\":");
    buf_uint(out, comment);
    buf_puts(out, ",\"code_lines\":");
    buf_uint(out, code);
    buf_putc(out, '}');
}

/* ---- count_lines ------------------------------------------------------------ */

static void count_lines(buf *out, const u8 *s, size_t n) {
    size_t line_count = 0, blank = 0, non_blank = 0, longest = 0;
    lines_iter it = {s, n, 0};
    size_t ls, le;
    while (next_line(&it, &ls, &le)) {
        line_count++;
        size_t a = ls, e = le;
        trim(s, &a, &e);
        if (a == e) blank++;
        else non_blank++;
        size_t len = char_count(s + ls, le - ls);
        if (len > longest) longest = len;
    }
    buf_puts(out, "{\"line_count\":");
    buf_uint(out, line_count);
    buf_puts(out, ",\"blank_lines\":");
    buf_uint(out, blank);
    buf_puts(out, ",\"non_blank_lines\":");
    buf_uint(out, non_blank);
    buf_puts(out, ",\"longest_line\":");
    buf_uint(out, longest);
    buf_putc(out, '}');
}

/* ---- check_security --------------------------------------------------------- */

static const char SQL_MESSAGE[] = "SELECT ... WHERE without a ? or $ placeholder: possible SQL injection";

static void finding(buf *f, size_t *count, const char *kind, size_t line, const char *message,
                    const u8 *snippet, size_t snippet_len) {
    if (*count) buf_putc(f, ',');
    (*count)++;
    buf_puts(f, "{\"kind\":");
    buf_json_cstr(f, kind);
    buf_puts(f, ",\"line\":");
    buf_uint(f, line);
    buf_puts(f, ",\"message\":");
    buf_json_cstr(f, message);
    buf_puts(f, ",\"snippet\":");
    buf_json_str(f, snippet, snippet_len);
    buf_putc(f, '}');
}

static void check_security(buf *out, const u8 *s, size_t n) {
    buf f = {0};
    size_t count = 0, number = 0;
    lines_iter it = {s, n, 0};
    size_t ls, le;
    while (next_line(&it, &ls, &le)) {
        number++;
        const u8 *line = s + ls;
        size_t len = le - ls;
        size_t a = ls, e = le;
        trim(s, &a, &e);
        const u8 *snippet = s + a;
        size_t snippet_len = take_chars(snippet, e - a, 120);
        if (find_ex(line, len, "select", 1) != NPOS && find_ex(line, len, "where", 1) != NPOS &&
            !memchr(line, '?', len) && !memchr(line, '$', len))
            finding(&f, &count, "sql_injection", number, SQL_MESSAGE, snippet, snippet_len);
        if (find_ex(line, len, "password", 1) != NPOS)
            finding(&f, &count, "hardcoded_secret", number,
                    "mentions \"password\": possible hard-coded secret", snippet, snippet_len);
        else if (find_ex(line, len, "secret", 1) != NPOS)
            finding(&f, &count, "hardcoded_secret", number,
                    "mentions \"secret\": possible hard-coded secret", snippet, snippet_len);
    }
    buf_puts(out, "{\"issue_count\":");
    buf_uint(out, count);
    buf_puts(out, ",\"findings\":[");
    buf_put(out, f.p, f.len);
    buf_puts(out, "]}");
    buf_free(&f);
}

/* ---- JSON reading: serde_json's grammar, limits, messages and positions ------ */

#define EOF_VALUE "EOF while parsing a value"
#define EOF_LIST "EOF while parsing a list"
#define EOF_OBJECT "EOF while parsing an object"
#define EOF_STRING "EOF while parsing a string"
#define CONTROL_CHAR "control character (\\u0000-\\u001F) found while parsing a string"
#define LONE_SURROGATE "lone leading surrogate in hex escape"
#define TRAILING_COMMA "trailing comma"
#define TRAILING_CHARS "trailing characters"
#define RECURSION_LIMIT 128

/* A reader over UTF-8 bytes. On failure a function returns -1 and sets
   `msg` and `off`: the number of bytes serde_json had consumed, from which
   the line and column follow (section 7.3). */
typedef struct {
    const u8 *b;
    size_t n, i;
    int depth;
    const char *msg;
    size_t off;
} jreader;

/* An error caused by the byte at p (serde's peek_error; the end of the text
   when p is past it). */
static int fail_at(jreader *r, const char *msg, size_t p) {
    r->msg = msg;
    r->off = p < r->n ? p + 1 : r->n;
    return -1;
}

static int fail_eof(jreader *r, const char *msg) { return fail_at(r, msg, r->n); }

static void skip_ws(jreader *r) {
    while (r->i < r->n) {
        u8 c = r->b[r->i];
        if (c != ' ' && c != '\n' && c != '\t' && c != '\r') break;
        r->i++;
    }
}

static int is_digit(u8 c) { return c >= '0' && c <= '9'; }

static int digit_next(const jreader *r) { return r->i < r->n && is_digit(r->b[r->i]); }

static int hex_value(u8 c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int ident(jreader *r, const char *rest) {
    for (; *rest; rest++) {
        if (r->i == r->n) return fail_eof(r, EOF_VALUE);
        if (r->b[r->i++] != (u8)*rest) return fail_at(r, "expected ident", r->i - 1);
    }
    return 0;
}

static int hex4(jreader *r, unsigned *out) {
    if (r->n - r->i < 4) {
        r->i = r->n;
        return fail_eof(r, EOF_STRING);
    }
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hex_value(r->b[r->i + (size_t)k]);
        if (h < 0) {
            r->i += 4;
            return fail_at(r, "invalid escape", r->i - 1);
        }
        v = v * 16 + (unsigned)h;
    }
    r->i += 4;
    *out = v;
    return 0;
}

/* After the backslash. Appends the decoded character to `out` if given. */
static int escape(jreader *r, buf *out) {
    if (r->i == r->n) return fail_eof(r, EOF_STRING);
    u8 c = r->b[r->i++];
    char plain;
    switch (c) {
    case '"': plain = '"'; break;
    case '\\': plain = '\\'; break;
    case '/': plain = '/'; break;
    case 'b': plain = '\b'; break;
    case 'f': plain = '\f'; break;
    case 'n': plain = '\n'; break;
    case 'r': plain = '\r'; break;
    case 't': plain = '\t'; break;
    case 'u': plain = 0; break;
    default: return fail_at(r, "invalid escape", r->i - 1);
    }
    if (c != 'u') {
        if (out) buf_putc(out, plain);
        return 0;
    }
    unsigned unit, low;
    if (hex4(r, &unit)) return -1;
    if (unit >= 0xDC00 && unit <= 0xDFFF) return fail_at(r, LONE_SURROGATE, r->i - 1);
    uint32_t cp = unit;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
        for (const char *expected = "\\u"; *expected; expected++) {
            if (r->i == r->n) return fail_eof(r, EOF_STRING);
            if (r->b[r->i] != (u8)*expected)
                return fail_at(r, "unexpected end of hex escape", r->i);
            r->i++;
        }
        if (hex4(r, &low)) return -1;
        if (low < 0xDC00 || low > 0xDFFF) return fail_at(r, LONE_SURROGATE, r->i - 1);
        cp = 0x10000 + ((uint32_t)(unit - 0xD800) << 10) + (low - 0xDC00);
    }
    if (out) buf_utf8(out, cp);
    return 0;
}

/* After the opening quote. Appends the decoded string to `out` if given. */
static int string(jreader *r, buf *out) {
    for (;;) {
        size_t start = r->i;
        while (r->i < r->n) {
            u8 c = r->b[r->i];
            if (c == '"' || c == '\\' || c < 0x20) break;
            r->i++;
        }
        if (out) buf_put(out, r->b + start, r->i - start);
        if (r->i == r->n) return fail_eof(r, EOF_STRING);
        u8 c = r->b[r->i];
        if (c == '"') {
            r->i++;
            return 0;
        }
        if (c != '\\') return fail_at(r, CONTROL_CHAR, r->i);
        r->i++;
        if (escape(r, out)) return -1;
    }
}

/* 2^1024 - 2^970: the smallest magnitude that rounds to infinity. */
static const char INF_THRESHOLD[] =
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475094664901797"
    "75872070963302864166928879109465555478519404026306574886715058206819089020007083836762738548"
    "45817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711"
    "559699508093042880177904174497792";

/* Whether digits int[is..ie) . frac[fs..fe) times 10^exp round to infinity as
   an f64, compared exactly with INF_THRESHOLD (correct rounding, ties up). */
static int rounds_to_infinity(const u8 *b, size_t is, size_t ie, size_t fs, size_t fe,
                              int64_t exp) {
    size_t k = is;
    int64_t point; /* value = 0.DIGITS x 10^point, DIGITS starting non-zero */
    while (k < ie && b[k] == '0') k++;
    if (k < ie) {
        point = (int64_t)(ie - k) + exp;
    } else {
        k = fs;
        while (k < fe && b[k] == '0') k++;
        if (k == fe) return 0; /* zero */
        point = exp - (int64_t)(k - fs);
    }
    const int64_t width = (int64_t)sizeof INF_THRESHOLD - 1;
    if (point != width) return point > width;
    for (size_t j = 0; j < (size_t)width; j++) {
        if (k == ie) k = fs; /* from the integer digits on to the fraction */
        if (k >= fe || (k >= ie && k < fs)) return 0; /* fewer digits: smaller */
        if (b[k] != (u8)INF_THRESHOLD[j]) return b[k] > (u8)INF_THRESHOLD[j];
        k++;
    }
    return 1; /* equal up to the threshold's last (non-zero) digit: >= */
}

/* The shape of a number that was read (for payload error messages). */
typedef struct {
    size_t start, end;
    int is_float; /* has a fraction or an exponent */
} number_info;

static int number(jreader *r, number_info *info) {
    const u8 *b = r->b;
    size_t start = r->i;
    if (b[r->i] == '-') r->i++;
    if (r->i == r->n) return fail_eof(r, EOF_VALUE);
    size_t int_start = r->i;
    u8 c = b[r->i++];
    int mantissa_nonzero = 0;
    if (c == '0') {
        if (digit_next(r)) return fail_at(r, "invalid number", r->i);
    } else if (c >= '1' && c <= '9') {
        mantissa_nonzero = 1;
        while (digit_next(r)) r->i++;
    } else {
        return fail_at(r, "invalid number", r->i - 1);
    }
    size_t int_end = r->i, frac_start = r->i, frac_end = r->i;
    info->is_float = 0;
    if (r->i < r->n && b[r->i] == '.') {
        info->is_float = 1;
        r->i++;
        if (r->i == r->n) return fail_eof(r, EOF_VALUE);
        if (!digit_next(r)) return fail_at(r, "invalid number", r->i);
        frac_start = r->i;
        while (digit_next(r)) {
            if (b[r->i] != '0') mantissa_nonzero = 1;
            r->i++;
        }
        frac_end = r->i;
    }
    int64_t exp = 0;
    if (r->i < r->n && (b[r->i] == 'e' || b[r->i] == 'E')) {
        info->is_float = 1;
        r->i++;
        int negative_exp = 0;
        if (r->i < r->n && (b[r->i] == '+' || b[r->i] == '-')) {
            negative_exp = b[r->i] == '-';
            r->i++;
        }
        if (r->i == r->n) return fail_eof(r, EOF_VALUE);
        c = b[r->i++];
        if (!is_digit(c)) return fail_at(r, "invalid number", r->i - 1);
        exp = c - '0';
        while (digit_next(r)) {
            int d = b[r->i++] - '0';
            if (exp > 214748364 || (exp == 214748364 && d > 7)) {
                /* The exponent no longer fits in an i32. */
                if (mantissa_nonzero && !negative_exp)
                    return fail_at(r, "number out of range", r->i - 1);
                while (digit_next(r)) r->i++;
                info->start = start;
                info->end = r->i;
                return 0; /* the value is 0: valid */
            }
            exp = exp * 10 + d;
        }
        if (negative_exp) exp = -exp;
    }
    info->start = start;
    info->end = r->i;
    if (rounds_to_infinity(b, int_start, int_end, frac_start, frac_end, exp))
        return fail_at(r, "number out of range", r->i - 1);
    return 0;
}

static int array(jreader *r);
static int object(jreader *r);

/* One value; *kind gets its kind (`parse_json`'s names). */
static int value(jreader *r, const char **kind) {
    skip_ws(r);
    if (r->i == r->n) return fail_eof(r, EOF_VALUE);
    u8 c = r->b[r->i];
    number_info info;
    switch (c) {
    case 'n': r->i++; *kind = "null"; return ident(r, "ull");
    case 't': r->i++; *kind = "bool"; return ident(r, "rue");
    case 'f': r->i++; *kind = "bool"; return ident(r, "alse");
    case '"': r->i++; *kind = "string"; return string(r, NULL);
    case '[':
    case '{':
        if (++r->depth >= RECURSION_LIMIT) return fail_at(r, "recursion limit exceeded", r->i);
        r->i++;
        if (c == '[' ? array(r) : object(r)) return -1;
        r->depth--;
        *kind = c == '[' ? "array" : "object";
        return 0;
    default:
        if (c == '-' || is_digit(c)) {
            *kind = "number";
            return number(r, &info);
        }
        return fail_at(r, "expected value", r->i);
    }
}

static int array(jreader *r) {
    const char *kind;
    for (int first = 1;; first = 0) {
        skip_ws(r);
        if (r->i == r->n) return fail_eof(r, EOF_LIST);
        u8 c = r->b[r->i];
        if (c == ']') {
            r->i++;
            return 0;
        }
        if (!first) {
            if (c != ',') return fail_at(r, "expected `,` or `]`", r->i);
            r->i++;
            skip_ws(r);
            if (r->i == r->n) return fail_eof(r, EOF_VALUE);
            if (r->b[r->i] == ']') return fail_at(r, TRAILING_COMMA, r->i);
        }
        if (value(r, &kind)) return -1;
    }
}

static int object(jreader *r) {
    const char *kind;
    for (int first = 1;; first = 0) {
        skip_ws(r);
        if (r->i == r->n) return fail_eof(r, EOF_OBJECT);
        u8 c = r->b[r->i];
        if (c == '}') {
            r->i++;
            return 0;
        }
        if (first) {
            if (c != '"') return fail_at(r, "key must be a string", r->i);
        } else {
            if (c != ',') return fail_at(r, "expected `,` or `}`", r->i);
            r->i++;
            skip_ws(r);
            if (r->i == r->n) return fail_eof(r, EOF_VALUE);
            if (r->b[r->i] == '}') return fail_at(r, TRAILING_COMMA, r->i);
            if (r->b[r->i] != '"') return fail_at(r, "key must be a string", r->i);
        }
        r->i++; /* the key's opening quote */
        if (string(r, NULL)) return -1;
        skip_ws(r);
        if (r->i == r->n) return fail_eof(r, EOF_OBJECT);
        if (r->b[r->i] != ':') return fail_at(r, "expected `:`", r->i);
        r->i++;
        if (value(r, &kind)) return -1;
    }
}

/* Line and column of the byte offset `off` (serde_json's position_of_index). */
static void position(const u8 *b, size_t off, size_t *line, size_t *column) {
    size_t l = 1, start = 0;
    for (size_t k = 0; k < off; k++)
        if (b[k] == '\n') {
            l++;
            start = k + 1;
        }
    *line = l;
    *column = off - start;
}

/* ---- parse_json ------------------------------------------------------------- */

static void parse_json(buf *out, const u8 *text, size_t n) {
    jreader r = {text, n, 0, 0, NULL, 0};
    const char *kind;
    int rc = value(&r, &kind);
    if (!rc) {
        skip_ws(&r);
        if (r.i < r.n) rc = fail_at(&r, TRAILING_CHARS, r.i);
    }
    if (!rc) {
        buf_puts(out, "{\"valid\":true,\"kind\":");
        buf_json_cstr(out, kind);
        buf_putc(out, '}');
        return;
    }
    size_t line, column;
    position(text, r.off, &line, &column);
    buf_puts(out, "{\"valid\":false,\"error\":{\"message\":");
    buf_json_cstr(out, r.msg);
    buf_puts(out, ",\"line\":");
    buf_uint(out, line);
    buf_puts(out, ",\"column\":");
    buf_uint(out, column);
    buf_puts(out, "}}");
}

/* ---- Rust formatting for payload error messages (informative) ---------------- */

/* An approximation of Rust's `char::escape_debug` deciding to write \u{...}:
   controls, non-ASCII whitespace, common format characters and combining
   marks, private use and non-characters. (Rust uses full Unicode tables for
   "printable" and Grapheme_Extend; unassigned code points are not covered.) */
static int debug_escapes(uint32_t c) {
    static const uint32_t ranges[][2] = {
        {0x0000, 0x001F}, {0x007F, 0x00A0}, {0x00AD, 0x00AD}, {0x0300, 0x036F},
        {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x0600, 0x0605}, {0x061C, 0x061C},
        {0x06DD, 0x06DD}, {0x070F, 0x070F}, {0x1680, 0x1680}, {0x180E, 0x180E},
        {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF}, {0x2000, 0x200F}, {0x2028, 0x202F},
        {0x205F, 0x206F}, {0x20D0, 0x20FF}, {0x3000, 0x3000}, {0x302A, 0x302F},
        {0x3099, 0x309A}, {0xD800, 0xF8FF}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F},
        {0xFEFF, 0xFEFF}, {0xFFF0, 0xFFFB}, {0xFFFE, 0xFFFF}, {0x1D173, 0x1D17A},
        {0xE0000, 0xE0FFF}, {0xF0000, 0x10FFFF},
    };
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++)
        if (c >= ranges[k][0] && c <= ranges[k][1]) return 1;
    return (c & 0xFFFE) == 0xFFFE;
}

/* `{:?}` of a str: quoted, with Rust's escapes. */
static void buf_rust_debug(buf *b, const u8 *s, size_t n) {
    buf_putc(b, '"');
    size_t i = 0, len;
    while (i < n) {
        uint32_t c = utf8_decode(s + i, n - i, &len);
        switch (c) {
        case 0: buf_puts(b, "\\0"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '"': buf_puts(b, "\\\""); break;
        default:
            if (debug_escapes(c)) {
                char tmp[16];
                snprintf(tmp, sizeof tmp, "\\u{%lx}", (unsigned long)c);
                buf_puts(b, tmp);
            } else {
                buf_put(b, s + i, len);
            }
        }
        i += len;
    }
    buf_putc(b, '"');
}

/* serde_json's `floating point` display (zmij): the shortest digits that
   round-trip; fixed notation for decimal exponents -5..=15 (with ".0" when
   integral), else `d.ddde+XX` / `de-X`. */
static void buf_json_float(buf *b, double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    if (bits >> 63) {
        buf_putc(b, '-');
        x = -x;
    }
    if (x == 0) {
        buf_puts(b, "0.0");
        return;
    }
    char tmp[40];
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    for (; *p && *p != 'e' && nd < sizeof digits; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    long e10 = *p == 'e' ? strtol(p + 1, NULL, 10) : 0;
    if (nd == 0) { /* not a finite number (cannot happen: out of range is refused) */
        buf_puts(b, tmp);
        return;
    }
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (e10 < -5 || e10 > 15) {
        buf_putc(b, digits[0]);
        if (nd > 1) {
            buf_putc(b, '.');
            buf_put(b, digits + 1, nd - 1);
        }
        buf_puts(b, e10 < 0 ? "e-" : "e+");
        buf_uint(b, (uint64_t)(e10 < 0 ? -e10 : e10));
    } else if (e10 < 0) {
        buf_puts(b, "0.");
        for (long k = 0; k < -e10 - 1; k++) buf_putc(b, '0');
        buf_put(b, digits, nd);
    } else if ((long)nd <= e10 + 1) {
        buf_put(b, digits, nd);
        for (long k = (long)nd; k < e10 + 1; k++) buf_putc(b, '0');
        buf_puts(b, ".0");
    } else {
        buf_put(b, digits, (size_t)e10 + 1);
        buf_putc(b, '.');
        buf_put(b, digits + e10 + 1, nd - (size_t)e10 - 1);
    }
}

/* serde's `Unexpected` for the number just read, as serde_json classifies it. */
static void buf_unexpected_number(buf *b, const u8 *s, const number_info *info) {
    const u8 *t = s + info->start;
    size_t n = info->end - info->start;
    int negative = t[0] == '-';
    if (!info->is_float) {
        uint64_t v = 0;
        int overflow = 0;
        for (size_t k = (size_t)negative; k < n; k++) {
            unsigned d = (unsigned)(t[k] - '0');
            if (v > (UINT64_MAX - d) / 10) {
                overflow = 1;
                break;
            }
            v = v * 10 + d;
        }
        if (!overflow && (!negative || (v != 0 && v <= (uint64_t)1 << 63))) {
            buf_puts(b, "integer `");
            if (negative) buf_putc(b, '-');
            buf_uint(b, v);
            buf_putc(b, '`');
            return;
        }
    }
    char *text = malloc(n + 1);
    if (!text) abort();
    memcpy(text, t, n);
    text[n] = '\0';
    double x = strtod(text, NULL);
    free(text);
    buf_puts(b, "floating point `");
    buf_json_float(b, x);
    buf_putc(b, '`');
}

/* ---- payloads: serde's derived struct decoding, deny_unknown_fields --------- */

typedef struct {
    const char *task;
    const char *const *fields;
    size_t count;
    const char *expecting; /* "struct Source" */
    const char *one_of;    /* the field names, as unknown_field lists them */
} payload_spec;

static const char *const FIELDS_ANALYZE[] = {"language", "source"};
static const char *const FIELDS_SOURCE[] = {"source"};
static const char *const FIELDS_TEXT[] = {"text"};

/* The decoder: a syntax error is in r.msg/r.off; a serde "custom" error
   (invalid type, unknown field, ...) has its text in `custom` and takes the
   position where serde_json attaches it (fix_position). */
typedef struct {
    jreader r;
    const payload_spec *spec;
    buf custom;
    int is_custom;
    size_t custom_off;
} payload_decoder;

static int custom_error(payload_decoder *d, const char *a, const u8 *b, size_t bn,
                        const char *c) {
    d->is_custom = 1;
    d->custom_off = NPOS;
    d->custom.len = 0;
    buf_puts(&d->custom, a);
    buf_put(&d->custom, b, bn);
    buf_puts(&d->custom, c);
    return -1;
}

static void fix_position(payload_decoder *d) {
    if (d->is_custom && d->custom_off == NPOS) d->custom_off = d->r.i;
}

/* serde_json's peek_invalid_type: read the value that is not what was
   expected and describe it. */
static int invalid_type(payload_decoder *d, const char *expected) {
    jreader *r = &d->r;
    buf what = {0};
    number_info info;
    u8 c = r->b[r->i];
    int syntax = 0;
    switch (c) {
    case 'n': r->i++; syntax = ident(r, "ull"); buf_puts(&what, "null"); break;
    case 't': r->i++; syntax = ident(r, "rue"); buf_puts(&what, "boolean `true`"); break;
    case 'f': r->i++; syntax = ident(r, "alse"); buf_puts(&what, "boolean `false`"); break;
    case '[': buf_puts(&what, "sequence"); break;
    case '{': buf_puts(&what, "map"); break;
    case '"': {
        buf s = {0};
        r->i++;
        syntax = string(r, &s);
        if (!syntax) {
            buf_puts(&what, "string ");
            buf_rust_debug(&what, (const u8 *)s.p, s.len);
        }
        buf_free(&s);
        break;
    }
    default:
        if (c == '-' || is_digit(c)) {
            syntax = number(r, &info);
            if (!syntax) buf_unexpected_number(&what, r->b, &info);
        } else {
            syntax = fail_at(r, "expected value", r->i);
        }
    }
    if (!syntax) {
        buf_puts(&what, ", expected ");
        custom_error(d, "invalid type: ", (const u8 *)what.p, what.len, expected);
        fix_position(d);
    }
    buf_free(&what);
    return -1;
}

/* A string field (deserialize_str). */
static int field_string(payload_decoder *d, buf *out) {
    jreader *r = &d->r;
    skip_ws(r);
    if (r->i == r->n) return fail_eof(r, EOF_VALUE);
    if (r->b[r->i] != '"') return invalid_type(d, "a string");
    r->i++;
    out->len = 0;
    return string(r, out);
}

static int visit_seq(payload_decoder *d, buf *values) {
    jreader *r = &d->r;
    for (size_t k = 0; k < d->spec->count; k++) {
        skip_ws(r);
        if (r->i == r->n) return fail_eof(r, EOF_LIST);
        u8 c = r->b[r->i];
        if (c == ']') {
            buf msg = {0};
            buf_uint(&msg, k);
            buf_puts(&msg, ", expected ");
            buf_puts(&msg, d->spec->expecting);
            buf_puts(&msg, " with ");
            buf_uint(&msg, d->spec->count);
            buf_puts(&msg, d->spec->count == 1 ? " element" : " elements");
            custom_error(d, "invalid length ", (const u8 *)msg.p, msg.len, "");
            buf_free(&msg);
            return -1;
        }
        if (k > 0) {
            if (c != ',') return fail_at(r, "expected `,` or `]`", r->i);
            r->i++;
            skip_ws(r);
            if (r->i == r->n) return fail_eof(r, EOF_VALUE);
            if (r->b[r->i] == ']') return fail_at(r, TRAILING_COMMA, r->i);
        }
        if (field_string(d, &values[k])) return -1;
    }
    return 0;
}

static int end_seq(jreader *r) {
    skip_ws(r);
    if (r->i == r->n) return fail_eof(r, EOF_LIST);
    u8 c = r->b[r->i];
    if (c == ']') {
        r->i++;
        return 0;
    }
    if (c == ',') {
        r->i++;
        skip_ws(r);
        if (r->i < r->n && r->b[r->i] == ']') return fail_at(r, TRAILING_COMMA, r->i);
        return fail_at(r, TRAILING_CHARS, r->i);
    }
    return fail_at(r, TRAILING_CHARS, r->i);
}

static int visit_map(payload_decoder *d, buf *values) {
    jreader *r = &d->r;
    const payload_spec *spec = d->spec;
    int have[2] = {0, 0};
    buf key = {0};
    int rc = -1;
    for (int first = 1;; first = 0) {
        skip_ws(r);
        if (r->i == r->n) {
            fail_eof(r, EOF_OBJECT);
            goto done;
        }
        u8 c = r->b[r->i];
        if (c == '}') break;
        if (first) {
            if (c != '"') {
                fail_at(r, "key must be a string", r->i);
                goto done;
            }
        } else {
            if (c != ',') {
                fail_at(r, "expected `,` or `}`", r->i);
                goto done;
            }
            r->i++;
            skip_ws(r);
            if (r->i == r->n) {
                fail_eof(r, EOF_VALUE);
                goto done;
            }
            if (r->b[r->i] != '"') {
                fail_at(r, r->b[r->i] == '}' ? TRAILING_COMMA : "key must be a string", r->i);
                goto done;
            }
        }
        r->i++;
        key.len = 0;
        if (string(r, &key)) goto done;
        size_t k = 0;
        while (k < spec->count &&
               !(strlen(spec->fields[k]) == key.len && memcmp(spec->fields[k], key.p, key.len) == 0))
            k++;
        if (k == spec->count) {
            custom_error(d, "unknown field `", (const u8 *)key.p, key.len, "`, expected ");
            buf_puts(&d->custom, spec->one_of);
            goto done;
        }
        if (have[k]) {
            custom_error(d, "duplicate field `", (const u8 *)spec->fields[k],
                         strlen(spec->fields[k]), "`");
            goto done;
        }
        skip_ws(r);
        if (r->i == r->n) {
            fail_eof(r, EOF_OBJECT);
            goto done;
        }
        if (r->b[r->i] != ':') {
            fail_at(r, "expected `:`", r->i);
            goto done;
        }
        r->i++;
        if (field_string(d, &values[k])) goto done;
        have[k] = 1;
    }
    for (size_t k = 0; k < spec->count; k++)
        if (!have[k]) {
            custom_error(d, "missing field `", (const u8 *)spec->fields[k],
                         strlen(spec->fields[k]), "`");
            goto done;
        }
    rc = 0;
done:
    buf_free(&key);
    return rc;
}

static int end_map(jreader *r) {
    skip_ws(r);
    if (r->i == r->n) return fail_eof(r, EOF_OBJECT);
    u8 c = r->b[r->i];
    if (c == '}') {
        r->i++;
        return 0;
    }
    return fail_at(r, c == ',' ? TRAILING_COMMA : TRAILING_CHARS, r->i);
}

/* Decode the payload into values[0..spec->count). On failure, `message`
   gets serde_json's text: "<task>: <message> at line L column C". */
static int decode_payload(const payload_spec *spec, const u8 *p, size_t n, buf *values,
                          buf *message) {
    payload_decoder d = {{p, n, 0, 0, NULL, 0}, spec, {0}, 0, 0};
    jreader *r = &d.r;
    int rc;
    skip_ws(r);
    if (r->i == r->n) {
        rc = fail_eof(r, EOF_VALUE);
    } else if (r->b[r->i] == '[' || r->b[r->i] == '{') {
        int seq = r->b[r->i] == '[';
        r->i++;
        rc = seq ? visit_seq(&d, values) : visit_map(&d, values);
        /* serde_json ends the sequence or map even after an error (this moves
           the position a custom error gets); the first error wins. */
        jreader saved = *r;
        int end = seq ? end_seq(r) : end_map(r);
        if (rc) {
            r->msg = saved.msg;
            r->off = saved.off;
            fix_position(&d);
        } else {
            rc = end;
        }
    } else {
        rc = invalid_type(&d, spec->expecting);
    }
    if (!rc) {
        skip_ws(r);
        if (r->i < r->n) rc = fail_at(r, TRAILING_CHARS, r->i);
    }
    if (rc) {
        size_t off = d.is_custom ? d.custom_off : r->off, line, column;
        position(p, off, &line, &column);
        buf_puts(message, spec->task);
        buf_puts(message, ": ");
        if (d.is_custom) buf_put(message, d.custom.p, d.custom.len);
        else buf_puts(message, r->msg);
        buf_puts(message, " at line ");
        buf_uint(message, line);
        buf_puts(message, " column ");
        buf_uint(message, column);
    }
    buf_free(&d.custom);
    return rc;
}

/* ---- the task types, in the Rust swarm's order ------------------------------ */

enum analyzer_kind analyzer_execute(const char *type, size_t type_len, const char *payload,
                                    size_t payload_len, char **out, size_t *out_len) {
    static const payload_spec specs[] = {
        {"analyze_code", FIELDS_ANALYZE, 2, "struct AnalyzeCode", "`language` or `source`"},
        {"count_lines", FIELDS_SOURCE, 1, "struct Source", "`source`"},
        {"parse_json", FIELDS_TEXT, 1, "struct Text", "`text`"},
        {"check_security", FIELDS_SOURCE, 1, "struct Source", "`source`"},
    };
    buf result = {0};
    buf values[2] = {{0}, {0}};
    enum analyzer_kind kind = ANALYZER_OK;
    size_t task = 0;
    while (task < ANALYZER_TASK_TYPE_COUNT &&
           !(strlen(ANALYZER_TASK_TYPES[task]) == type_len &&
             (type_len == 0 || memcmp(ANALYZER_TASK_TYPES[task], type, type_len) == 0)))
        task++;
    if (task == ANALYZER_TASK_TYPE_COUNT) {
        kind = ANALYZER_UNKNOWN_TASK_TYPE;
        buf_put(&result, type, type ? type_len : 0);
        goto finish;
    }
    const u8 *p = (const u8 *)(payload ? payload : "");
    if (!payload) payload_len = 0;
    if (!utf8_valid(p, payload_len)) {
        kind = ANALYZER_INVALID_PAYLOAD;
        buf_puts(&result, specs[task].task);
        buf_puts(&result, ": payload is not valid UTF-8");
        goto finish;
    }
    for (size_t k = 0; k < 2; k++) buf_reserve(&values[k], 0); /* non-NULL, empty */
    if (decode_payload(&specs[task], p, payload_len, values, &result)) {
        kind = ANALYZER_INVALID_PAYLOAD;
        goto finish;
    }
    const u8 *s0 = (const u8 *)values[0].p, *s1 = (const u8 *)values[1].p;
    switch (task) {
    case 0: {
        const char *language = parse_language(s0, values[0].len);
        if (!language) {
            kind = ANALYZER_INVALID_PAYLOAD;
            buf_puts(&result, "unsupported language ");
            buf_rust_debug(&result, s0, values[0].len);
            buf_puts(&result, "; supported: python, rust, javascript, go, typescript");
            break;
        }
        analyze_code(&result, language, s1, values[1].len);
        break;
    }
    case 1: count_lines(&result, s0, values[0].len); break;
    case 2: parse_json(&result, s0, values[0].len); break;
    default: check_security(&result, s0, values[0].len); break;
    }
finish:
    buf_reserve(&result, 0);
    result.p[result.len] = '\0';
    buf_free(&values[0]);
    buf_free(&values[1]);
    *out = result.p;
    *out_len = result.len;
    return kind;
}
