"""`chassis_storage`: the `storage` import for Python swarms.

The Python counterpart of the Rust SDK's `chassis_sdk::storage`: objects
(bytes) kept between tasks in the swarm's own namespace of the host's store,
within the quota its contract sets (`[storage]`). The swarm must target the
`storing-swarm` world (or `swarm`): `world = "storing-swarm"` under
`[tool.chassis]` in its `pyproject.toml`.

    from chassis_storage import get_json, set_json

    @task("count")
    def count(payload):
        n = (get_json("counters/visits") or 0) + 1
        set_json("counters/visits", n)
        return {"value": n}

Every function raises `StorageError` when the host refuses or fails the
operation. It is a `TaskFailed`: a handler that lets it through fails the
task with the sentence `storage <what>: <the host's reason>`, as the Rust
SDK's `?` does. Catch a subclass (`QuotaExceeded`, `Denied`, ...) to act on
one reason.

`set` is not in `__all__` (it would hide the builtin `set` after
`from chassis_storage import *`): import the module, as above, or the
name itself.

Names are 1 to 256 bytes of ASCII letters, digits and `-` `_` `.`, in
`/`-separated segments; the host checks them, and one that tries to leave
the namespace (`..`, a leading `/`, ...) is refused and recorded as a
security violation.
"""

import json

from componentize_py_types import Err
from wit_world.imports import storage as _storage

from chassis_swarm import TaskFailed

__all__ = [
    "Denied",
    "InvalidName",
    "JsonError",
    "QuotaExceeded",
    "RateLimited",
    "StorageError",
    "TooLarge",
    "Unavailable",
    "delete",
    "exists",
    "get",
    "get_json",
    "list_keys",
    "list_page",
    "set_json",
    "stat",
    "usage",
]


class StorageError(TaskFailed):
    """Why the host refused or failed a storage operation.

    `str(e)` is `storage <what>: <the host's reason>`; `e.reason` is the
    host's reason alone."""

    what = "error"

    def __init__(self, reason):
        self.reason = str(reason)
        super().__init__(f"storage {self.what}: {self.reason}")


class Denied(StorageError):
    """No storage granted, or a write under `read_only`."""

    what = "denied"


class InvalidName(StorageError):
    """Not an object name (or one outside the namespace)."""

    what = "invalid name"


class QuotaExceeded(StorageError):
    """The write would go over the namespace's bytes or object count."""

    what = "quota exceeded"


class TooLarge(StorageError):
    """The object is over `max_object_bytes`."""

    what = "object too large"


class RateLimited(StorageError):
    """The swarm is over its `max_api_calls_per_second`."""

    what = "rate limited"


class Unavailable(StorageError):
    """The host's store failed, or did not answer by the task's deadline (a
    write so answered may or may not have been made)."""

    what = "unavailable"


class JsonError(StorageError):
    """The object is not JSON, or a value did not serialize (`get_json`,
    `set_json`); the store is fine."""

    what = "JSON"


_ERRORS = {
    _storage.StorageError_Denied: Denied,
    _storage.StorageError_InvalidName: InvalidName,
    _storage.StorageError_QuotaExceeded: QuotaExceeded,
    _storage.StorageError_TooLarge: TooLarge,
    _storage.StorageError_RateLimited: RateLimited,
    _storage.StorageError_Unavailable: Unavailable,
}


def _call(operation, *args):
    try:
        return operation(*args)
    except Err as e:
        kind = _ERRORS.get(type(e.value), StorageError)
        raise kind(getattr(e.value, "value", e.value)) from None


def get(name):
    """The object's bytes, or `None` when there is none of that name."""
    return _call(_storage.get, name)


def set(name, value):  # noqa: A001 - the WIT operation's name
    """Write the object whole (`bytes`, `bytearray`, `memoryview`, or `str`
    as UTF-8), replacing any before it."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    else:
        try:
            value = memoryview(value).tobytes()
        except TypeError:
            raise TypeError(
                f"storage.set({name!r}, ...): expected bytes or str, got {type(value).__name__}"
            ) from None
    _call(_storage.set, name, value)


def get_json(name):
    """The object parsed as JSON, or `None` when there is none."""
    data = get(name)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as e:
        raise JsonError(f"{name} does not hold JSON: {e}") from None


def set_json(name, value):
    """Write `value` as compact UTF-8 JSON, keys in their order (as the Rust
    SDK's `set_json` writes a `serde_json::Value`); the bytes written.

    Numbers are spelled as Python's `json` spells them: a value read back
    is the same in every language, but the bytes may differ from another
    language's (`1e+16` here, `1e16` in Rust, `10000000000000000` in
    JavaScript)."""
    try:
        data = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as e:
        # ValueError covers NaN and a lone surrogate (UnicodeEncodeError).
        raise JsonError(f"serializing {name}: {e}") from None
    set(name, data)
    return len(data)


def delete(name):
    """Remove the object (none of that name is not an error)."""
    _call(_storage.delete, name)


def exists(name):
    """Whether the object exists."""
    return _call(_storage.exists, name)


def list_page(prefix="", cursor=None, limit=0):
    """One page of names starting with `prefix`, after `cursor`: at most
    `limit` (0: the host's most, 1,000). Returns `(names, next_cursor)`;
    `next_cursor` is `None` on the last page."""
    page = _call(_storage.list_keys, prefix, cursor, limit)
    return list(page.keys), page.cursor


def list_keys(prefix=""):
    """Every name starting with `prefix` (empty: all), in byte order,
    fetched page by page."""
    names = []
    cursor = None
    while True:
        page, cursor = list_page(prefix, cursor)
        names.extend(page)
        if cursor is None:
            return names


def stat(name):
    """`{"size", "modified_ms"}` of the object, or `None`."""
    info = _call(_storage.stat, name)
    if info is None:
        return None
    return {"size": info.size, "modified_ms": info.modified_ms}


def usage():
    """The namespace's use of its quota: `bytes`, `objects`, `max_bytes`,
    `max_objects`, `max_object_bytes`, `read_only`."""
    u = _call(_storage.usage)
    return {
        "bytes": u.bytes,
        "objects": u.objects,
        "max_bytes": u.max_bytes,
        "max_objects": u.max_objects,
        "max_object_bytes": u.max_object_bytes,
        "read_only": u.read_only,
    }
