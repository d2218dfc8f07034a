/*
 * chassis_swarm.c: the C SDK's implementation (see chassis_swarm.h): the
 * component's `task` export over the swarm's CHASSIS_TASKS table, results,
 * the log, and the JSON reader and writer. Compiled by `chassis build`
 * with every C and C++ swarm.
 */
#include "chassis_swarm.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory and text -------------------------------------------------------- */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

static char *copy_n(const char *s, size_t len) {
    char *out = (char *)xmalloc(len + 1);
    if (len) memcpy(out, s, len);
    out[len] = 0;
    return out;
}

/* The length of the valid UTF-8 sequence at s[0..len], or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t len) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* `s[0..len]` as valid UTF-8 (invalid sequences become U+FFFD), malloc'd
 * and NUL-terminated; its length in *out_len. */
static char *utf8_clean(const char *s, size_t len, size_t *out_len) {
    char *out = (char *)xmalloc(len * 3 + 1);
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(u + i, len - i);
        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* printf into a malloc'd, UTF-8-clean text. */
static char *vformat(const char *fmt, va_list args, size_t *out_len) {
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) n = 0;
    char *raw = (char *)xmalloc((size_t)n + 1);
    vsnprintf(raw, (size_t)n + 1, fmt, args);
    char *clean = utf8_clean(raw, (size_t)n, out_len);
    free(raw);
    return clean;
}

/* ---- results -------------------------------------------------------------- */

chassis_result chassis_ok_n(const char *json, size_t len) {
    chassis_result r;
    r.kind = CHASSIS_OK;
    r.text = utf8_clean(json, len, &r.len);
    return r;
}

chassis_result chassis_ok(const char *json) { return chassis_ok_n(json, strlen(json)); }

static chassis_result refusal(chassis_result_kind kind, const char *fmt, va_list args) {
    chassis_result r;
    r.kind = kind;
    r.text = vformat(fmt, args, &r.len);
    return r;
}

chassis_result chassis_invalid_payload(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    chassis_result r = refusal(CHASSIS_INVALID_PAYLOAD, fmt, args);
    va_end(args);
    return r;
}

chassis_result chassis_failed(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    chassis_result r = refusal(CHASSIS_FAILED, fmt, args);
    va_end(args);
    return r;
}

/* ---- the log -------------------------------------------------------------- */

void chassis_log(infrafabric_chassis_log_level_t level, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    size_t len;
    char *text = vformat(fmt, args, &len);
    va_end(args);
    chassis_string_t message = {(uint8_t *)text, len};
    infrafabric_chassis_log_log(level, &message);
    free(text);
}

/* ---- the task export ---------------------------------------------------------- */

void exports_infrafabric_chassis_task_describe(chassis_list_string_t *ret) {
    ret->len = chassis_handler_count;
    ret->ptr = (chassis_string_t *)xmalloc(chassis_handler_count * sizeof(chassis_string_t));
    for (size_t i = 0; i < chassis_handler_count; i++) {
        chassis_string_dup(&ret->ptr[i], chassis_handlers[i].type);
    }
}

static void set_error(exports_infrafabric_chassis_task_task_error_t *err, uint8_t tag, char *text,
                      size_t len) {
    err->tag = tag;
    chassis_string_t s = {(uint8_t *)text, len};
    switch (tag) {
    case INFRAFABRIC_CHASSIS_TYPES_TASK_ERROR_UNKNOWN_TASK_TYPE: err->val.unknown_task_type = s; break;
    case INFRAFABRIC_CHASSIS_TYPES_TASK_ERROR_INVALID_PAYLOAD: err->val.invalid_payload = s; break;
    default: err->val.failed = s; break;
    }
}

bool exports_infrafabric_chassis_task_execute(exports_infrafabric_chassis_task_task_request_t *request,
                                              chassis_string_t *ret,
                                              exports_infrafabric_chassis_task_task_error_t *err) {
    chassis_task task;
    char *id = copy_n((const char *)request->task_id.ptr, request->task_id.len);
    char *type = copy_n((const char *)request->task_type.ptr, request->task_type.len);
    char *payload = copy_n((const char *)request->payload.ptr, request->payload.len);
    size_t type_len = request->task_type.len;
    task.id = id;
    task.type = type;
    task.payload = payload;
    task.payload_len = request->payload.len;
    exports_infrafabric_chassis_task_task_request_free(request);

    const chassis_handler *handler = NULL;
    for (size_t i = 0; i < chassis_handler_count; i++) {
        const char *t = chassis_handlers[i].type;
        if (strlen(t) == type_len && memcmp(t, type, type_len) == 0) {
            handler = &chassis_handlers[i];
            break;
        }
    }
    bool ok;
    if (!handler) {
        size_t len;
        char *text = utf8_clean(type, type_len, &len);
        set_error(err, INFRAFABRIC_CHASSIS_TYPES_TASK_ERROR_UNKNOWN_TASK_TYPE, text, len);
        ok = false;
    } else {
        chassis_result r = handler->run(&task);
        if (!r.text) {
            r = chassis_failed("the handler of %s returned no text", type);
        }
        switch (r.kind) {
        case CHASSIS_OK:
            ret->ptr = (uint8_t *)r.text;
            ret->len = r.len;
            ok = true;
            break;
        case CHASSIS_INVALID_PAYLOAD:
            set_error(err, INFRAFABRIC_CHASSIS_TYPES_TASK_ERROR_INVALID_PAYLOAD, r.text, r.len);
            ok = false;
            break;
        default:
            set_error(err, INFRAFABRIC_CHASSIS_TYPES_TASK_ERROR_FAILED, r.text, r.len);
            ok = false;
            break;
        }
    }
    free(id);
    free(type);
    free(payload);
    return ok;
}

/* ---- reading JSON ----------------------------------------------------------- */

typedef struct reader {
    const char *s;
    size_t len;
    size_t at;
    const char *error;
} reader;

static void skip_ws(reader *r) {
    while (r->at < r->len) {
        char c = r->s[r->at];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') r->at++;
        else break;
    }
}

static bool fail(reader *r, const char *why) {
    if (!r->error) r->error = why;
    return false;
}

static int hex4(reader *r, uint32_t *out) {
    if (r->len - r->at < 4) return fail(r, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = r->s[r->at++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return fail(r, "invalid \\u escape");
    }
    *out = v;
    return true;
}

static void put_utf8(char *out, size_t *o, uint32_t cp) {
    if (cp < 0x80) out[(*o)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* A string at r->at (its opening quote): decoded, malloc'd. */
static bool read_string(reader *r, char **out, size_t *out_len) {
    r->at++; /* the quote */
    size_t start = r->at;
    /* Decoded text is never longer than the source. */
    size_t end = start;
    while (end < r->len && r->s[end] != '"') {
        if (r->s[end] == '\\') end++;
        end++;
    }
    char *buf = (char *)xmalloc(end - start + 1);
    size_t o = 0;
    for (;;) {
        if (r->at >= r->len) {
            free(buf);
            return fail(r, "unterminated string");
        }
        unsigned char c = (unsigned char)r->s[r->at];
        if (c == '"') {
            r->at++;
            break;
        }
        if (c < 0x20) {
            free(buf);
            return fail(r, "control character in a string");
        }
        if (c != '\\') {
            size_t n = utf8_sequence((const unsigned char *)r->s + r->at, r->len - r->at);
            if (n == 0) {
                free(buf);
                return fail(r, "invalid UTF-8 in a string");
            }
            memcpy(buf + o, r->s + r->at, n);
            o += n;
            r->at += n;
            continue;
        }
        r->at++;
        if (r->at >= r->len) {
            free(buf);
            return fail(r, "unterminated string");
        }
        char e = r->s[r->at++];
        switch (e) {
        case '"': buf[o++] = '"'; break;
        case '\\': buf[o++] = '\\'; break;
        case '/': buf[o++] = '/'; break;
        case 'b': buf[o++] = '\b'; break;
        case 'f': buf[o++] = '\f'; break;
        case 'n': buf[o++] = '\n'; break;
        case 'r': buf[o++] = '\r'; break;
        case 't': buf[o++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!hex4(r, &cp)) {
                free(buf);
                return false;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(buf);
                return fail(r, "lone surrogate in a \\u escape");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t low;
                if (r->len - r->at < 2 || r->s[r->at] != '\\' || r->s[r->at + 1] != 'u') {
                    free(buf);
                    return fail(r, "lone surrogate in a \\u escape");
                }
                r->at += 2;
                if (!hex4(r, &low)) {
                    free(buf);
                    return false;
                }
                if (low < 0xDC00 || low > 0xDFFF) {
                    free(buf);
                    return fail(r, "lone surrogate in a \\u escape");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            put_utf8(buf, &o, cp);
            break;
        }
        default:
            free(buf);
            return fail(r, "invalid escape");
        }
    }
    buf[o] = 0;
    *out = buf;
    *out_len = o;
    return true;
}

static bool read_number(reader *r, double *out) {
    size_t start = r->at;
    if (r->at < r->len && r->s[r->at] == '-') r->at++;
    if (r->at >= r->len) return fail(r, "invalid number");
    if (r->s[r->at] == '0') {
        r->at++;
    } else if (r->s[r->at] >= '1' && r->s[r->at] <= '9') {
        while (r->at < r->len && r->s[r->at] >= '0' && r->s[r->at] <= '9') r->at++;
    } else {
        return fail(r, "invalid number");
    }
    if (r->at < r->len && r->s[r->at] == '.') {
        r->at++;
        size_t digits = r->at;
        while (r->at < r->len && r->s[r->at] >= '0' && r->s[r->at] <= '9') r->at++;
        if (r->at == digits) return fail(r, "invalid number");
    }
    if (r->at < r->len && (r->s[r->at] == 'e' || r->s[r->at] == 'E')) {
        r->at++;
        if (r->at < r->len && (r->s[r->at] == '+' || r->s[r->at] == '-')) r->at++;
        size_t digits = r->at;
        while (r->at < r->len && r->s[r->at] >= '0' && r->s[r->at] <= '9') r->at++;
        if (r->at == digits) return fail(r, "invalid number");
    }
    char *text = copy_n(r->s + start, r->at - start);
    double v = strtod(text, NULL);
    free(text);
    if (!isfinite(v)) return fail(r, "number out of range");
    *out = v;
    return true;
}

static bool literal(reader *r, const char *word) {
    size_t n = strlen(word);
    if (r->len - r->at < n || memcmp(r->s + r->at, word, n) != 0) return fail(r, "expected a value");
    r->at += n;
    return true;
}

static void free_contents(chassis_json *v);

static bool read_value(reader *r, chassis_json *v, int depth) {
    memset(v, 0, sizeof *v);
    skip_ws(r);
    if (r->at >= r->len) return fail(r, "expected a value");
    char c = r->s[r->at];
    switch (c) {
    case 'n': v->kind = CHASSIS_JSON_NULL; return literal(r, "null");
    case 't': v->kind = CHASSIS_JSON_BOOL; v->boolean = true; return literal(r, "true");
    case 'f': v->kind = CHASSIS_JSON_BOOL; return literal(r, "false");
    case '"':
        v->kind = CHASSIS_JSON_STRING;
        return read_string(r, &v->string, &v->string_len);
    case '[':
    case '{': {
        bool object = c == '{';
        if (depth >= CHASSIS_JSON_MAX_DEPTH) return fail(r, "nested too deeply");
        v->kind = object ? CHASSIS_JSON_OBJECT : CHASSIS_JSON_ARRAY;
        r->at++;
        size_t cap = 0;
        skip_ws(r);
        if (r->at < r->len && r->s[r->at] == (object ? '}' : ']')) {
            r->at++;
            return true;
        }
        for (;;) {
            if (v->count == cap) {
                cap = cap ? cap * 2 : 4;
                v->items = (chassis_json *)xrealloc(v->items, cap * sizeof(chassis_json));
                if (object) v->keys = (char **)xrealloc(v->keys, cap * sizeof(char *));
            }
            if (object) {
                skip_ws(r);
                if (r->at >= r->len || r->s[r->at] != '"') return fail(r, "expected a member name");
                size_t key_len;
                if (!read_string(r, &v->keys[v->count], &key_len)) return false;
                skip_ws(r);
                if (r->at >= r->len || r->s[r->at] != ':') {
                    free(v->keys[v->count]);
                    return fail(r, "expected ':'");
                }
                r->at++;
            }
            if (!read_value(r, &v->items[v->count], depth + 1)) {
                free_contents(&v->items[v->count]);
                if (object) free(v->keys[v->count]);
                return false;
            }
            v->count++;
            skip_ws(r);
            if (r->at >= r->len) return fail(r, object ? "expected ',' or '}'" : "expected ',' or ']'");
            char next = r->s[r->at++];
            if (next == ',') continue;
            if (next == (object ? '}' : ']')) return true;
            return fail(r, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            v->kind = CHASSIS_JSON_NUMBER;
            return read_number(r, &v->number);
        }
        return fail(r, "expected a value");
    }
}

static void free_contents(chassis_json *v) {
    if (!v) return;
    free(v->string);
    for (size_t i = 0; i < v->count; i++) {
        free_contents(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

chassis_json *chassis_json_parse(const char *text, size_t len, char *error, size_t error_size) {
    reader r = {text, len, 0, NULL};
    chassis_json *v = (chassis_json *)xmalloc(sizeof *v);
    bool ok = read_value(&r, v, 0);
    if (ok) {
        skip_ws(&r);
        if (r.at != r.len) ok = fail(&r, "trailing characters");
    }
    if (!ok) {
        free_contents(v);
        free(v);
        if (error && error_size) snprintf(error, error_size, "%s at byte %zu", r.error, r.at);
        return NULL;
    }
    return v;
}

void chassis_json_free(chassis_json *value) {
    if (!value) return;
    free_contents(value);
    free(value);
}

chassis_json *chassis_payload(const chassis_task *task, chassis_result *refusal) {
    char why[160];
    chassis_json *v = chassis_json_parse(task->payload, task->payload_len, why, sizeof why);
    if (!v) *refusal = chassis_invalid_payload("the payload is not JSON: %s", why);
    return v;
}

const chassis_json *chassis_json_get(const chassis_json *object, const char *key) {
    if (!object || object->kind != CHASSIS_JSON_OBJECT) return NULL;
    const chassis_json *found = NULL;
    for (size_t i = 0; i < object->count; i++) {
        if (strcmp(object->keys[i], key) == 0) found = &object->items[i];
    }
    return found;
}

const char *chassis_json_unknown_key(const chassis_json *object, const char *const allowed[], size_t n) {
    if (!object || object->kind != CHASSIS_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < object->count; i++) {
        bool known = false;
        for (size_t j = 0; j < n && !known; j++) known = strcmp(object->keys[i], allowed[j]) == 0;
        if (!known) return object->keys[i];
    }
    return NULL;
}

/* ---- writing JSON ----------------------------------------------------------- */

void chassis_json_writer_init(chassis_json_writer *w) { memset(w, 0, sizeof *w); }

void chassis_json_writer_free(chassis_json_writer *w) {
    free(w->buf);
    memset(w, 0, sizeof *w);
}

static void put(chassis_json_writer *w, const char *s, size_t n) {
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < w->len + n + 1) cap *= 2;
        w->buf = (char *)xrealloc(w->buf, cap);
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

/* Before a value: the comma, and whether a value may come here (in an
 * object, only after its key). */
static bool before_value(chassis_json_writer *w) {
    if (w->failed) return false;
    uint64_t bit = w->depth ? (uint64_t)1 << (w->depth - 1) : 0;
    if (w->depth && (w->in_object & bit)) {
        if (!w->value_due) {
            w->failed = true;
            return false;
        }
        w->value_due = false;
        return true;
    }
    if (w->depth == 0 && w->len) {
        w->failed = true; /* a second top-level value */
        return false;
    }
    if (w->depth && (w->has_items & bit)) put(w, ",", 1);
    w->has_items |= bit;
    return true;
}

static void escaped(chassis_json_writer *w, const char *s, size_t len) {
    put(w, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c == '"') { put(w, "\\\"", 2); i++; }
        else if (c == '\\') { put(w, "\\\\", 2); i++; }
        else if (c == '\n') { put(w, "\\n", 2); i++; }
        else if (c == '\r') { put(w, "\\r", 2); i++; }
        else if (c == '\t') { put(w, "\\t", 2); i++; }
        else if (c == '\b') { put(w, "\\b", 2); i++; }
        else if (c == '\f') { put(w, "\\f", 2); i++; }
        else if (c < 0x20) {
            char esc[7];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(w, esc, 6);
            i++;
        } else {
            size_t n = utf8_sequence(u + i, len - i);
            if (n == 0) {
                put(w, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                put(w, s + i, n);
                i += n;
            }
        }
    }
    put(w, "\"", 1);
}

static void open_level(chassis_json_writer *w, bool object) {
    if (!before_value(w)) return;
    if (w->depth >= 64) {
        w->failed = true;
        return;
    }
    put(w, object ? "{" : "[", 1);
    uint64_t bit = (uint64_t)1 << w->depth;
    w->depth++;
    w->has_items &= ~bit;
    if (object) w->in_object |= bit;
    else w->in_object &= ~bit;
}

static void close_level(chassis_json_writer *w, bool object) {
    if (w->failed) return;
    uint64_t bit = w->depth ? (uint64_t)1 << (w->depth - 1) : 0;
    if (!w->depth || ((w->in_object & bit) != 0) != object || w->value_due) {
        w->failed = true;
        return;
    }
    put(w, object ? "}" : "]", 1);
    w->depth--;
}

void chassis_json_begin_object(chassis_json_writer *w) { open_level(w, true); }
void chassis_json_end_object(chassis_json_writer *w) { close_level(w, true); }
void chassis_json_begin_array(chassis_json_writer *w) { open_level(w, false); }
void chassis_json_end_array(chassis_json_writer *w) { close_level(w, false); }

void chassis_json_key(chassis_json_writer *w, const char *key) {
    if (w->failed) return;
    uint64_t bit = w->depth ? (uint64_t)1 << (w->depth - 1) : 0;
    if (!w->depth || !(w->in_object & bit) || w->value_due) {
        w->failed = true;
        return;
    }
    if (w->has_items & bit) put(w, ",", 1);
    w->has_items |= bit;
    escaped(w, key, strlen(key));
    put(w, ":", 1);
    w->value_due = true;
}

#define SCALAR(w, body)               \
    do {                              \
        if (!before_value(w)) return; \
        body;                         \
    } while (0)

void chassis_json_string_n(chassis_json_writer *w, const char *s, size_t len) {
    SCALAR(w, escaped(w, s, len));
}

void chassis_json_string(chassis_json_writer *w, const char *s) { chassis_json_string_n(w, s, strlen(s)); }

void chassis_json_stringf(chassis_json_writer *w, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    size_t len;
    char *text = vformat(fmt, args, &len);
    va_end(args);
    chassis_json_string_n(w, text, len);
    free(text);
}

void chassis_json_int(chassis_json_writer *w, int64_t n) {
    char text[24];
    int len = snprintf(text, sizeof text, "%lld", (long long)n);
    SCALAR(w, put(w, text, (size_t)len));
}

void chassis_json_uint(chassis_json_writer *w, uint64_t n) {
    char text[24];
    int len = snprintf(text, sizeof text, "%llu", (unsigned long long)n);
    SCALAR(w, put(w, text, (size_t)len));
}

void chassis_json_double(chassis_json_writer *w, double n) {
    if (!isfinite(n)) {
        chassis_json_null(w);
        return;
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%.17g", n);
    SCALAR(w, put(w, text, (size_t)len));
}

void chassis_json_bool(chassis_json_writer *w, bool b) {
    SCALAR(w, put(w, b ? "true" : "false", b ? 4 : 5));
}

void chassis_json_null(chassis_json_writer *w) { SCALAR(w, put(w, "null", 4)); }

chassis_result chassis_ok_json(chassis_json_writer *w) {
    chassis_result r;
    if (w->failed || w->depth != 0 || w->len == 0) {
        r = chassis_failed("the swarm built its JSON output wrongly (unbalanced, a value where a key "
                           "was due, or nested over 64 levels)");
    } else {
        r.kind = CHASSIS_OK;
        r.text = w->buf;
        r.len = w->len;
        w->buf = NULL;
    }
    chassis_json_writer_free(w);
    return r;
}
