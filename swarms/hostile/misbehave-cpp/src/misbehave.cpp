// misbehave-cpp: a hostile swarm in C++ (libc++, no exceptions). Each task
// breaks a rule on purpose, the C++ way:
//
// | task          | does                                                | the host's answer    |
// |---------------|-----------------------------------------------------|----------------------|
// | `oob_write`   | writes through a pointer past linear memory         | trap (out of bounds) |
// | `spin`        | loops for ever                                      | timeout              |
// | `memory_bomb` | grows a std::vector of 1 MiB strings without end     | memory limit         |
// | `vector_at`   | std::vector::at out of range (would throw: aborts)  | trap                 |
// | `credential`  | reads the credential `token` (its length only)      | the grant decides    |
#include <cstdint>
#include <string>
#include <vector>

#include "chassis_swarm.h"

namespace {

chassis_result oob_write(const chassis_task *) {
    auto *p = reinterpret_cast<volatile std::uint8_t *>(std::uintptr_t{0xfffffff0u});
    *p = 1;
    return chassis_ok("{}");
}

chassis_result spin(const chassis_task *) {
    volatile std::uint64_t n = 0;
    for (;;) n = n + 1;
}

// Kept past the task's end so that the compiler keeps every block.
std::vector<std::string> *kept = nullptr;

chassis_result memory_bomb(const chassis_task *) {
    kept = new std::vector<std::string>();
    for (;;) kept->emplace_back(std::size_t{1} << 20, 'x');
}

chassis_result vector_at(const chassis_task *task) {
    std::vector<int> v(4, 1);
    // An index from the payload's length: past the end, and not known to
    // the compiler.
    return v.at(task->payload_len + 10) ? chassis_ok("{}") : chassis_ok("{}");
}

chassis_result credential(const chassis_task *) {
    chassis_string_t name, value;
    infrafabric_chassis_credentials_credential_error_t err;
    chassis_string_set(&name, "token");
    if (!infrafabric_chassis_credentials_get(&name, &value, &err)) {
        return chassis_failed("credential refused (case %u)", static_cast<unsigned>(err.tag));
    }
    std::string out = "{\"length\":" + std::to_string(value.len) + "}";
    chassis_string_free(&value);
    return chassis_ok(out.c_str());
}

}  // namespace

CHASSIS_TASKS({"oob_write", oob_write}, {"spin", spin}, {"memory_bomb", memory_bomb},
              {"vector_at", vector_at}, {"credential", credential});
