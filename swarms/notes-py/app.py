"""`notes-py`: the `notes` swarm (swarms/notes) in Python, written with
`chassis_storage` (guest-sdk/python): the same tasks, the same objects, the
same results.

- `count`: `{"counter": "visits"}` -> `{"counter", "value"}`: adds one to
  the counter kept in `counters/<counter>` (8 bytes, little-endian);
- `put`: `{"name", "note"}` -> `{"name", "bytes"}`;
- `get`: `{"name"}` -> `{"name", "note"}` (`note` is null when there is none);
- `list`: `{"prefix"}` -> `{"names"}`;
- `stat`: `{"name"}` -> `{"name", "exists", "size"}` (`size` null when
  there is none);
- `page`: `{"prefix", "cursor", "limit"}` -> one page `{"names", "cursor"}`
  (`cursor` null on the last);
- `delete`: `{"name"}` -> `{"deleted"}`;
- `usage`: `{}` -> the namespace's bytes and objects against its quota;
- `fill`: `{"n", "bytes"}` -> N writes over `fill/0`..`fill/15`, and
  `scan`: `{"n"}` -> N reads of them.

A refusal from the host (a name outside the namespace, the quota) is a
`StorageError`, which fails the task with the host's reason.
"""

import chassis_storage as storage
from chassis_swarm import InvalidPayload, Task, TaskFailed, info, task  # noqa: F401 - Task is the export


MAX_U32 = 2**32 - 1


def _fields(payload, **kinds):
    """The payload's fields, each of the type given (a tuple: optional, with
    its default, which when `None` lets the field be null; `None`: any JSON;
    `int`: 0 to 2^32 - 1), and no others (as `swarms/notes`
    refuses unknown fields)."""
    if not isinstance(payload, dict):
        raise InvalidPayload("expected an object")
    unknown = set(payload) - set(kinds)
    if unknown:
        raise InvalidPayload(f"unknown field `{sorted(unknown)[0]}`")
    values = []
    for name, kind in kinds.items():
        nullable = False
        if isinstance(kind, tuple):
            kind, default = kind
            # An optional field without a default may also be null.
            nullable = default is None
            value = payload.get(name, default)
        elif name in payload:
            value = payload[name]
        else:
            raise InvalidPayload(f"missing field `{name}`")
        if value is None and nullable:
            pass
        elif kind is not None and not _is(value, kind):
            raise InvalidPayload(f"`{name}` has the wrong type")
        values.append(value)
    return values


def _is(value, kind):
    if kind is int:
        return type(value) is int and 0 <= value <= MAX_U32
    return isinstance(value, kind)


def _filled(i):
    return f"fill/{i % 16}"


@task("count")
def count(payload):
    (counter,) = _fields(payload, counter=str)
    name = f"counters/{counter}"
    data = storage.get(name)
    if data is None:
        value = 1
    elif len(data) != 8:
        raise TaskFailed(f"{name} is not a counter")
    else:
        value = int.from_bytes(data, "little") + 1
    storage.set(name, value.to_bytes(8, "little"))
    info(f"{name} = {value}")
    return {"counter": counter, "value": value}


@task("put")
def put(payload):
    name, note = _fields(payload, name=str, note=None)
    return {"name": name, "bytes": storage.set_json(name, note)}


@task("get")
def get(payload):
    (name,) = _fields(payload, name=str)
    return {"name": name, "note": storage.get_json(name)}


@task("list")
def list_names(payload):
    (prefix,) = _fields(payload, prefix=(str, ""))
    return {"names": storage.list_keys(prefix)}


@task("stat")
def stat(payload):
    (name,) = _fields(payload, name=str)
    exists = storage.exists(name)
    info = storage.stat(name)
    return {"name": name, "exists": exists, "size": None if info is None else info["size"]}


@task("page")
def page(payload):
    prefix, cursor, limit = _fields(payload, prefix=(str, ""), cursor=(str, None), limit=int)
    names, cursor = storage.list_page(prefix, cursor, limit)
    return {"names": names, "cursor": cursor}


@task("delete")
def delete(payload):
    (name,) = _fields(payload, name=str)
    storage.delete(name)
    return {"deleted": name}


@task("usage")
def usage(payload):
    return storage.usage()


@task("fill")
def fill(payload):
    n, size = _fields(payload, n=int, bytes=(int, 0))
    value = bytes([7]) * size
    for i in range(n):
        storage.set(_filled(i), value)
    return {"writes": n}


@task("scan")
def scan(payload):
    n, _ = _fields(payload, n=int, bytes=(int, 0))
    total = 0
    for i in range(n):
        data = storage.get(_filled(i))
        total += 0 if data is None else len(data)
    return {"reads": n, "bytes": total}
