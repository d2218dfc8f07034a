"""`hello-py`: the smallest Python swarm written with `chassis_swarm`
(guest-sdk/python).

- `hello` greets `name` (a string, default "world"); any other `name` is an
  invalid payload.
- `fail` raises `ValueError("boom")` two calls deep: the helper turns the
  uncaught exception into a failed task whose message carries the
  exception and the innermost traceback frames.
"""

from chassis_swarm import InvalidPayload, Task, info, task  # noqa: F401 - Task is the export


@task("hello")
def hello(payload):
    if not isinstance(payload, dict):
        raise InvalidPayload("expected an object")
    name = payload.get("name", "world")
    if not isinstance(name, str):
        raise InvalidPayload("`name` must be a string")
    info(f"greeting {name}")
    return {"greeting": f"Hello, {name}!"}


def explode(what):
    raise ValueError(what)


def work():
    explode("boom")


@task("fail")
def fail(payload):
    work()
