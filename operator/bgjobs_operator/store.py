"""In-memory stores of watched objects, fed by the watch events, with label indexes.

A reconcile reads what it needs through an index ("the BackgroundJobs of schedule S",
"the Jobs of queue Q in namespace N", "unfinished BackgroundJobs"), so its cost is that of
its own objects, not of every object in the cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

Key = tuple[str, str]  # (namespace, name)
Obj = dict[str, Any]
IndexFn = Callable[[Obj], Iterable[Hashable]]


def rv(obj: Obj) -> int:
    """resourceVersion as a number, to tell the newer of two copies of one object (etcd
    revisions grow monotonically; anything unparsable counts as oldest)."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return -1


def key_of(obj: Obj) -> Key:
    md = obj["metadata"]
    return md.get("namespace") or "", md["name"]


# How many deleted objects' uids a store remembers (see Store.put).
DELETED_MEMORY = 10_000


class Store:
    def __init__(self, trim: Callable[[Obj], Obj] = lambda o: o) -> None:
        self._objects: dict[Key, Obj] = {}
        # uids of objects seen deleted, oldest first: a uid never comes back, so a copy of
        # one is stale (a write's response that arrived after the object's DELETED event).
        self._deleted: dict[str, None] = {}
        self._trim = trim
        self._index_fns: dict[str, IndexFn] = {}
        self._indexes: dict[str, defaultdict[Hashable, set[Key]]] = {}
        self._entries: dict[str, dict[Key, tuple[Hashable, ...]]] = {}

    def add_index(self, name: str, fn: IndexFn) -> None:
        self._index_fns[name] = fn
        self._indexes[name] = defaultdict(set)
        self._entries[name] = {}
        for key, obj in self._objects.items():
            self._index(name, key, obj)

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, key: Key) -> Obj | None:
        return self._objects.get(key)

    def values(self) -> list[Obj]:
        return list(self._objects.values())

    def keys(self, index: str, value: Hashable) -> set[Key]:
        return set(self._indexes[index].get(value, ()))

    def by_index(self, index: str, value: Hashable) -> list[Obj]:
        return [self._objects[k] for k in self._indexes[index].get(value, ())]

    def put(self, obj: Obj) -> Obj:
        """Keep the newest copy of obj (a watch event or our own write's response);
        returns what the store now holds."""
        if obj["metadata"].get("uid") in self._deleted:
            return obj  # a ghost: it would be reconciled (and recreated) as if alive
        obj = self._trim(obj)
        key = key_of(obj)
        old = self._objects.get(key)
        if (
            old is not None
            and old["metadata"].get("uid") == obj["metadata"].get("uid")
            and rv(old) > rv(obj)
        ):
            return old
        self._objects[key] = obj
        for name in self._index_fns:
            self._index(name, key, obj)
        return obj

    def clear(self) -> None:
        """Forget everything (a standby replica taking over lists it all again)."""
        self._objects.clear()
        self._deleted.clear()
        for name in self._index_fns:
            self._indexes[name].clear()
            self._entries[name].clear()

    def remove(self, obj: Obj) -> None:
        """Forget obj, unless the store holds a newer object of the same name."""
        uid = obj["metadata"].get("uid")
        if uid:
            self._deleted[uid] = None
            if len(self._deleted) > DELETED_MEMORY:
                del self._deleted[next(iter(self._deleted))]
        key = key_of(obj)
        old = self._objects.get(key)
        if old is None or old["metadata"].get("uid") != uid:
            return
        del self._objects[key]
        for name in self._index_fns:
            self._unindex(name, key)

    def _index(self, name: str, key: Key, obj: Obj) -> None:
        values = tuple(self._index_fns[name](obj))
        if self._entries[name].get(key) == values:
            return
        self._unindex(name, key)
        if values:
            self._entries[name][key] = values
            for value in values:
                self._indexes[name][value].add(key)

    def _unindex(self, name: str, key: Key) -> None:
        for value in self._entries[name].pop(key, ()):
            bucket = self._indexes[name].get(value)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self._indexes[name][value]
