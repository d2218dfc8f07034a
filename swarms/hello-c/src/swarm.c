/*
 * `hello-c`: a swarm for IF.chassis.
 *
 * - `hello`: {"name": "Ada"} -> {"greeting": "Hello, Ada!"} (the name
 *   defaults to "world").
 * - `fail`: fails on purpose with the message "boom".
 *
 * The template `chassis new --lang c` makes, with `fail` added; the bench's
 * trivial C task (figure g).
 *
 * Build with `chassis build`, try it with `chassis test` (the cases in
 * tests.toml) and `chassis run . --task hello`. chassis_swarm.h is the SDK:
 * `chassis build` writes it into chassis/, with the WIT's C bindings.
 */
#include "chassis_swarm.h"

static chassis_result hello(const chassis_task *task) {
    chassis_result refusal;
    chassis_json *payload = chassis_payload(task, &refusal);
    if (!payload) return refusal;
    if (payload->kind != CHASSIS_JSON_OBJECT) {
        chassis_json_free(payload);
        return chassis_invalid_payload("expected an object");
    }
    static const char *const fields[] = {"name"};
    const char *unknown = chassis_json_unknown_key(payload, fields, 1);
    if (unknown) {
        chassis_result r = chassis_invalid_payload("unknown field `%s`, expected `name`", unknown);
        chassis_json_free(payload);
        return r;
    }
    const chassis_json *name = chassis_json_get(payload, "name");
    if (name && name->kind != CHASSIS_JSON_STRING) {
        chassis_json_free(payload);
        return chassis_invalid_payload("`name` must be a string");
    }
    const char *who = name ? name->string : "world";
    chassis_info("greeting %s", who);

    chassis_json_writer out;
    chassis_json_writer_init(&out);
    chassis_json_begin_object(&out);
    chassis_json_key(&out, "greeting");
    chassis_json_stringf(&out, "Hello, %s!", who);
    chassis_json_end_object(&out);
    chassis_json_free(payload);
    return chassis_ok_json(&out);
}

static chassis_result fail(const chassis_task *task) {
    (void)task;
    return chassis_failed("boom");
}

CHASSIS_TASKS({"hello", hello}, {"fail", fail});
