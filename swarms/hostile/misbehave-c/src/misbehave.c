/*
 * misbehave-c: a hostile swarm in C. Each task breaks a rule on purpose:
 *
 * | task          | does                                          | the host's answer     |
 * |---------------|-----------------------------------------------|-----------------------|
 * | `oob_write`   | stores through a pointer past linear memory   | trap (out of bounds)  |
 * | `spin`        | loops for ever                                | timeout               |
 * | `memory_bomb` | allocates and touches 1 MiB at a time, forever | memory limit          |
 * | `recurse`     | recurses without end                          | trap (stack)          |
 * | `credential`  | reads the credential `token` (its length only) | the grant decides     |
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chassis_swarm.h"

static chassis_result oob_write(const chassis_task *task) {
    (void)task;
    volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)0xfffffff0u;
    *p = 1;
    return chassis_ok("{}");
}

static chassis_result spin(const chassis_task *task) {
    (void)task;
    volatile uint64_t n = 0;
    for (;;) n++;
    return chassis_ok("{}");
}

/* The blocks memory_bomb keeps (so that the compiler keeps them too). */
static void *volatile kept;

static chassis_result memory_bomb(const chassis_task *task) {
    (void)task;
    size_t total = 0;
    for (;;) {
        void **block = (void **)malloc(1 << 20);
        if (!block) return chassis_failed("malloc gave up after %zu MiB", total);
        memset(block, 0xab, 1 << 20);
        *block = kept;
        kept = block;
        total++;
    }
}

/* Never reached: the stack runs out first. */
static volatile uint64_t bottom = UINT64_MAX;

static uint64_t deeper(volatile uint64_t depth) {
    if (depth == bottom) return 0;
    volatile uint8_t frame[256];
    frame[depth % 256] = (uint8_t)depth;
    return deeper(depth + 1) + frame[0];
}

static chassis_result recurse(const chassis_task *task) {
    (void)task;
    chassis_json_writer out;
    chassis_json_writer_init(&out);
    chassis_json_begin_object(&out);
    chassis_json_key(&out, "depth");
    chassis_json_uint(&out, deeper(0));
    chassis_json_end_object(&out);
    return chassis_ok_json(&out);
}

static chassis_result credential(const chassis_task *task) {
    (void)task;
    chassis_string_t name;
    chassis_string_set(&name, "token");
    chassis_string_t value;
    infrafabric_chassis_credentials_credential_error_t err;
    if (!infrafabric_chassis_credentials_get(&name, &value, &err)) {
        return chassis_failed("credential refused (case %u)", (unsigned)err.tag);
    }
    chassis_json_writer out;
    chassis_json_writer_init(&out);
    chassis_json_begin_object(&out);
    chassis_json_key(&out, "length");
    chassis_json_uint(&out, value.len);
    chassis_json_end_object(&out);
    return chassis_ok_json(&out);
}

CHASSIS_TASKS({"oob_write", oob_write}, {"spin", spin}, {"memory_bomb", memory_bomb},
              {"recurse", recurse}, {"credential", credential});
