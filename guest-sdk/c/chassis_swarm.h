/*
 * chassis_swarm.h: the C and C++ SDK of IF.chassis.
 *
 * A swarm written in C names its task types and a handler for each:
 *
 *     #include "chassis_swarm.h"
 *
 *     static chassis_result hello(const chassis_task *task) {
 *         chassis_result refusal;
 *         chassis_json *payload = chassis_payload(task, &refusal);
 *         if (!payload) return refusal;
 *         ...
 *         return chassis_ok("{\"done\":true}");
 *     }
 *
 *     CHASSIS_TASKS({"hello", hello});
 *
 * The SDK implements the component's `task` export over that table
 * (`describe` lists the types, `execute` finds the handler, hands it the
 * task as NUL-terminated text and turns its result into the WIT's
 * `result<string, task-error>`), and gives what a handler needs: a strict
 * JSON reader for the payload, a JSON writer for the output (escaping,
 * commas and nesting done for you), the scoped log, and the error results.
 * The WIT's own C bindings (`chassis.h`, made by `chassis build` with
 * wit-bindgen-c) are included too: credentials, the HTTP proxy and storage
 * are called through them (`infrafabric_chassis_credentials_get`, ...)
 * where the project's world has them.
 *
 * Memory: every instance runs one task and is then discarded, so a
 * handler may leave what it allocated; the SDK frees what it made.
 * Text given to the host must be UTF-8: the writer replaces invalid
 * sequences with U+FFFD, and so do the error and log functions.
 *
 * Usable from C++ as it is (`extern "C"` throughout).
 */
#ifndef CHASSIS_SWARM_H
#define CHASSIS_SWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chassis.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CHASSIS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CHASSIS_PRINTF(f, a)
#endif

/* ---- tasks -------------------------------------------------------------- */

/* A task as a handler sees it. Each text is NUL-terminated; the payload's
 * length is given as well. Valid for the handler's call. */
typedef struct chassis_task {
    const char *id;
    const char *type;
    const char *payload;
    size_t payload_len;
} chassis_task;

/* What a handler returns: made by chassis_ok, chassis_ok_json,
 * chassis_invalid_payload or chassis_failed. */
typedef enum chassis_result_kind {
    CHASSIS_OK = 0,
    CHASSIS_INVALID_PAYLOAD = 1,
    CHASSIS_FAILED = 2,
} chassis_result_kind;

typedef struct chassis_result {
    chassis_result_kind kind;
    /* malloc'd: the output JSON (OK) or the message. */
    char *text;
    size_t len;
} chassis_result;

typedef chassis_result (*chassis_handler_fn)(const chassis_task *task);

/* One task type and its handler. */
typedef struct chassis_handler {
    const char *type;
    chassis_handler_fn run;
} chassis_handler;

/* The swarm's task table, defined once by CHASSIS_TASKS. */
extern const chassis_handler chassis_handlers[];
extern const size_t chassis_handler_count;

#define CHASSIS_TASKS(...)                                        \
    const chassis_handler chassis_handlers[] = {__VA_ARGS__};     \
    const size_t chassis_handler_count =                          \
        sizeof(chassis_handlers) / sizeof(chassis_handlers[0])

/* Success: a copy of the JSON text `json`. */
chassis_result chassis_ok(const char *json);
/* Success with `len` bytes of JSON text. */
chassis_result chassis_ok_n(const char *json, size_t len);
/* The payload is not what the task type expects (the `invalid-payload`
 * task error), with a printf-style message. */
chassis_result chassis_invalid_payload(const char *fmt, ...) CHASSIS_PRINTF(1, 2);
/* The task ran and failed (the `failed` task error). */
chassis_result chassis_failed(const char *fmt, ...) CHASSIS_PRINTF(1, 2);

/* ---- the log -------------------------------------------------------------- */

/* One line in the host's log, prefixed there with the swarm's id. Lines
 * over the contract's log budget are dropped and counted by the host. */
void chassis_log(infrafabric_chassis_log_level_t level, const char *fmt, ...) CHASSIS_PRINTF(2, 3);
#define chassis_trace(...) chassis_log(INFRAFABRIC_CHASSIS_LOG_LEVEL_TRACE, __VA_ARGS__)
#define chassis_debug(...) chassis_log(INFRAFABRIC_CHASSIS_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define chassis_info(...) chassis_log(INFRAFABRIC_CHASSIS_LOG_LEVEL_INFO, __VA_ARGS__)
#define chassis_warn(...) chassis_log(INFRAFABRIC_CHASSIS_LOG_LEVEL_WARN, __VA_ARGS__)
#define chassis_error(...) chassis_log(INFRAFABRIC_CHASSIS_LOG_LEVEL_ERROR, __VA_ARGS__)

/* ---- reading JSON --------------------------------------------------------- */

typedef enum chassis_json_kind {
    CHASSIS_JSON_NULL,
    CHASSIS_JSON_BOOL,
    CHASSIS_JSON_NUMBER,
    CHASSIS_JSON_STRING,
    CHASSIS_JSON_ARRAY,
    CHASSIS_JSON_OBJECT,
} chassis_json_kind;

/* A parsed JSON value. */
typedef struct chassis_json {
    chassis_json_kind kind;
    bool boolean;
    double number;
    /* STRING: the decoded text, NUL-terminated (it may hold NULs: use
     * string_len). */
    char *string;
    size_t string_len;
    /* ARRAY: the items; OBJECT: the members' values, in document order. */
    struct chassis_json *items;
    size_t count;
    /* OBJECT: the members' names (NUL-terminated), as `items`. */
    char **keys;
} chassis_json;

/* Deepest nesting the reader accepts. */
#define CHASSIS_JSON_MAX_DEPTH 128

/* Parse `len` bytes of JSON text: exactly one value (RFC 8259; no NaN,
 * no comments, no trailing commas, no lone surrogates, numbers that fit a
 * double). NULL when it is not, with the reason and its byte offset in
 * `error` (if not NULL). Free with chassis_json_free. */
chassis_json *chassis_json_parse(const char *text, size_t len, char *error, size_t error_size);
void chassis_json_free(chassis_json *value);

/* The task's payload, parsed; NULL when it is not JSON, with `*refusal`
 * set to the invalid-payload result to return. */
chassis_json *chassis_payload(const chassis_task *task, chassis_result *refusal);

/* The member `key` of an object (the last of equal names), or NULL (no such
 * member, or `object` is not an object). */
const chassis_json *chassis_json_get(const chassis_json *object, const char *key);
/* The first member of `object` whose name is not one of `allowed[0..n]`,
 * or NULL: to refuse fields a task does not know. */
const char *chassis_json_unknown_key(const chassis_json *object, const char *const allowed[], size_t n);

/* ---- writing JSON --------------------------------------------------------- */

/* Builds one JSON text; commas, escaping and nesting are its business. A
 * misuse (a value where a key is due, nesting over 64 levels, no memory)
 * marks it failed: chassis_ok_json then returns a `failed` result. */
typedef struct chassis_json_writer {
    char *buf;
    size_t len;
    size_t cap;
    int depth;
    uint64_t in_object;   /* bit d: level d is an object */
    uint64_t has_items;   /* bit d: level d has a value already */
    bool value_due;       /* a key was written: its value comes next */
    bool failed;
} chassis_json_writer;

void chassis_json_writer_init(chassis_json_writer *w);
void chassis_json_writer_free(chassis_json_writer *w);
void chassis_json_begin_object(chassis_json_writer *w);
void chassis_json_end_object(chassis_json_writer *w);
void chassis_json_begin_array(chassis_json_writer *w);
void chassis_json_end_array(chassis_json_writer *w);
void chassis_json_key(chassis_json_writer *w, const char *key);
void chassis_json_string(chassis_json_writer *w, const char *s);
void chassis_json_string_n(chassis_json_writer *w, const char *s, size_t len);
void chassis_json_stringf(chassis_json_writer *w, const char *fmt, ...) CHASSIS_PRINTF(2, 3);
void chassis_json_int(chassis_json_writer *w, int64_t n);
void chassis_json_uint(chassis_json_writer *w, uint64_t n);
/* A finite number (NaN and infinities are written as null, as JSON has
 * none). */
void chassis_json_double(chassis_json_writer *w, double n);
void chassis_json_bool(chassis_json_writer *w, bool b);
void chassis_json_null(chassis_json_writer *w);
/* Success with the writer's text (the writer is emptied). */
chassis_result chassis_ok_json(chassis_json_writer *w);

#ifdef __cplusplus
}
#endif

#endif /* CHASSIS_SWARM_H */
