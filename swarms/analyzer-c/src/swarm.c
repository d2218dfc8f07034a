/*
 * `analyzer` in C, as a swarm: the four task types of analyzer.c (the port
 * of swarms/analyzer, with byte-identical results; docs/analyzer.md), each
 * served through the C SDK (guest-sdk/c). Built with `chassis build`
 * (`cargo xtask build` runs it); the component imports the log and nothing
 * else.
 */
#include <string.h>

#include "analyzer.h"
#include "chassis_swarm.h"

static chassis_result run(const chassis_task *task) {
    char *out = NULL;
    size_t len = 0;
    enum analyzer_kind kind =
        analyzer_execute(task->type, strlen(task->type), task->payload, task->payload_len, &out, &len);
    chassis_result r;
    r.text = out;
    r.len = len;
    switch (kind) {
    case ANALYZER_OK: r.kind = CHASSIS_OK; break;
    case ANALYZER_INVALID_PAYLOAD: r.kind = CHASSIS_INVALID_PAYLOAD; break;
    /* The SDK answers unknown task types itself; the analyzer cannot get one. */
    default: r.kind = CHASSIS_FAILED; break;
    }
    return r;
}

CHASSIS_TASKS({"analyze_code", run}, {"count_lines", run}, {"parse_json", run}, {"check_security", run});
