// `analyzer` in AssemblyScript, as a swarm: the four task types of
// `analyzer.ts` (the port of swarms/analyzer, with byte-identical results;
// docs/analyzer.md), each registered with the SDK (guest-sdk/assemblyscript),
// which does the canonical ABI. Built with `chassis build` (`cargo xtask
// build` runs it); the component imports the log and nothing else.

import { Output, Task, failed, invalidPayload, ok, register } from "../chassis/swarm";
import { ANALYZER_INVALID_PAYLOAD, ANALYZER_OK, TASK_TYPES, analyze } from "./analyzer";

function run(task: Task): Output {
  const outcome = analyze(task.type, task.payload);
  if (outcome.kind == ANALYZER_OK) return ok(outcome.text);
  if (outcome.kind == ANALYZER_INVALID_PAYLOAD) return invalidPayload(outcome.text);
  // The SDK answers unknown task types itself; the analyzer cannot get one.
  return failed(outcome.text);
}

for (let i = 0; i < TASK_TYPES.length; i++) register(TASK_TYPES[i], run);
