/* analyzer in C: the four tasks of the Rust swarm in `swarms/analyzer`
   (analyze_code, count_lines, parse_json, check_security) with byte-identical
   results; docs/analyzer.md is the specification. C11, libc only. */
#ifndef ANALYZER_H
#define ANALYZER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Outcome kinds. */
enum analyzer_kind { ANALYZER_OK = 0, ANALYZER_INVALID_PAYLOAD = 1, ANALYZER_UNKNOWN_TASK_TYPE = 2 };

/* The task types, in describe() order, and their count. */
extern const char *const ANALYZER_TASK_TYPES[];
extern const size_t ANALYZER_TASK_TYPE_COUNT;

/* Run one task. `type`/`payload` are UTF-8 (not NUL-terminated; payload may
   be any bytes the host gives, always valid UTF-8). On return *out is a
   malloc'd UTF-8 text of *out_len bytes (NUL-terminated too): the result JSON
   for ANALYZER_OK, a human message for the errors (messages are informative,
   only the kind must match the reference). Returns the kind; on allocation failure abort(). */
enum analyzer_kind analyzer_execute(const char *type, size_t type_len,
                                    const char *payload, size_t payload_len,
                                    char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* ANALYZER_H */
