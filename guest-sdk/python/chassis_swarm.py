"""`chassis_swarm`: write an IF.chassis swarm in plain Python.

The Python counterpart of the Rust SDK (`guest-sdk/src/lib.rs`). A swarm
module registers one function per task type and re-exports `Task`, the class
componentize-py binds to the WIT `task` interface:

    from chassis_swarm import InvalidPayload, Task, info, task

    @task("hello")
    def hello(payload):
        name = payload.get("name", "world")
        if not isinstance(name, str):
            raise InvalidPayload("`name` must be a string")
        info(f"greeting {name}")
        return {"greeting": f"Hello, {name}!"}

What `Task` does with one request:

- `describe()` returns the registered task types, in registration order; an
  `execute` for any other type is refused with `unknown-task-type`.
- The payload (JSON text) is parsed into a dict (or list, str, ...); text
  that is not JSON is refused with `invalid-payload` and the parser's
  message. `@task(..., raw=True)` hands the handler the text instead.
- The handler's return value is serialized to the JSON result text.
- `raise InvalidPayload("...")` / `raise TaskFailed("...")` refuse the task
  with that variant and message. Any other exception fails the task
  (`failed`) with its type, message and the innermost frames of its
  traceback, instead of trapping the component.

`cargo xtask build` puts this directory on componentize-py's path (`-p
guest-sdk/python`), so every Python swarm can import it. It needs a world
with the `log` import: all the chassis worlds have it.
"""

import json
import os

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log as _log
from wit_world.imports import types as _types

__all__ = [
    "InvalidPayload",
    "Task",
    "TaskError",
    "TaskFailed",
    "debug",
    "error",
    "info",
    "log",
    "task",
    "task_types",
    "trace",
    "warn",
]

# Bounds of a failure message built from an uncaught exception: the
# exception's own line, and the traceback frames kept after it.
MAX_EXCEPTION_CHARS = 1000
MAX_TRACEBACK_BYTES = 400
MAX_FRAMES = 4

_THIS_FILE = "chassis_swarm.py"


# ---- errors a handler raises on purpose ---------------------------------


class TaskError(Exception):
    """Base of the errors a handler raises to refuse a task."""

    def __init__(self, message=""):
        super().__init__(message)
        self.message = str(message)

    def __str__(self):
        return self.message


class InvalidPayload(TaskError):
    """The payload was not what the task type expects (`invalid-payload`)."""


class TaskFailed(TaskError):
    """The task ran and failed (`failed`)."""


# ---- logging --------------------------------------------------------------


def log(level, message):
    """Write one line to the host's log at `level` (`log.Level.*` or a name
    such as "info"); the host prefixes it with the swarm id."""
    if isinstance(level, str):
        level = _log.Level[level.upper()]
    _log.log(level, str(message))


def trace(message):
    """Log at `trace` level."""
    _log.log(_log.Level.TRACE, str(message))


def debug(message):
    """Log at `debug` level."""
    _log.log(_log.Level.DEBUG, str(message))


def info(message):
    """Log at `info` level."""
    _log.log(_log.Level.INFO, str(message))


def warn(message):
    """Log at `warn` level."""
    _log.log(_log.Level.WARN, str(message))


def error(message):
    """Log at `error` level."""
    _log.log(_log.Level.ERROR, str(message))


# ---- registration ---------------------------------------------------------

# Task type -> (handler, raw), in registration order.
_HANDLERS = {}


def task(task_type, *, raw=False):
    """Register the decorated function as the handler of `task_type`.

    The handler is called with the parsed payload (with `raw=True`: the
    payload's JSON text) and returns the result, any value `json.dumps`
    accepts.
    """

    def register(handler):
        if task_type in _HANDLERS:
            raise ValueError(f"task type {task_type!r} is registered twice")
        _HANDLERS[task_type] = (handler, raw)
        return handler

    return register


def task_types():
    """The registered task types, in registration order."""
    return list(_HANDLERS)


# ---- turning an exception into a message ---------------------------------


def _truncate(text, limit):
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_message(exc):
    """`Type: message`, then the innermost traceback frames (outside this
    module), most recent call last, bounded to a few hundred bytes.

    Everything is read from the exception and its frames' code objects, not
    with the `traceback` module: that one reads source lines through
    `linecache`, and a file access traps in a component without WASI."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ still leaves the type
        text = ""
    head = _truncate(f"{name}: {text}" if text else name, MAX_EXCEPTION_CHARS)
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = os.path.basename(code.co_filename)
        if filename != _THIS_FILE:
            frames.append(f'  File "{filename}", line {tb.tb_lineno}, in {code.co_name}')
        tb = tb.tb_next
    kept = []
    size = 0
    for text in reversed(frames):
        text = _truncate(text, MAX_TRACEBACK_BYTES)
        cost = len(text.encode("utf-8", "replace")) + 1
        if len(kept) == MAX_FRAMES or (kept and size + cost > MAX_TRACEBACK_BYTES):
            break
        kept.append(text)
        size += cost
    if not kept:
        return head
    omitted = len(frames) - len(kept)
    header = "Traceback (most recent call last"
    header += f", {omitted} outer frames omitted):" if omitted else "):"
    return "\n".join([head, header] + list(reversed(kept)))


def _failed(exc):
    try:
        message = failure_message(exc)
    except BaseException:  # noqa: BLE001 - a message of some kind is better than a trap
        message = type(exc).__name__
    return Err(_types.TaskError_Failed(message))


# ---- the `task` export ------------------------------------------------------


class Task(exports.Task):
    """The WIT `task` export. A swarm module makes it visible with
    `from chassis_swarm import Task`."""

    def describe(self):
        return task_types()

    def execute(self, request):
        entry = _HANDLERS.get(request.task_type)
        if entry is None:
            raise Err(_types.TaskError_UnknownTaskType(request.task_type))
        handler, raw = entry
        if raw:
            payload = request.payload
        else:
            try:
                payload = json.loads(request.payload)
            except ValueError as e:
                raise Err(_types.TaskError_InvalidPayload(f"{request.task_type}: {e}"))
        try:
            result = handler(payload)
        except InvalidPayload as e:
            raise Err(_types.TaskError_InvalidPayload(e.message))
        except TaskError as e:
            raise Err(_types.TaskError_Failed(e.message))
        except Err:
            raise
        except BaseException as e:  # noqa: BLE001 - anything else fails the task, not the component
            raise _failed(e)
        try:
            return json.dumps(result, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise Err(_types.TaskError_Failed(f"serializing result: {e}"))
