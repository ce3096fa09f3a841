"""One remote command reads the state of every file, directory and unit a run manages.

pyinfra 3 runs a fact's command every time an operation asks for it, and a converged run
is mostly such questions: about 10-30 ms each over SSH. The operations in render.py and
system.py register the path or unit they manage when they are planned; the first one to
ask reads all registered ones in one command (``HostSnapshot``) and later ones look the
answer up. The snapshot is taken again when execution starts (what planning saw may have
changed since), and an operation that manages a path is the only one that changes it.
Installing packages changes files and units wholesale: ``new_generation()`` after the
install makes everything planned later read a snapshot taken after it.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from functools import wraps

from pyinfra import host, state
from pyinfra.api import FactBase

from operations.facts import FileState

KINDS = ("files", "dirs", "units")
# host -> generation -> kind -> keys
_registered: dict[str, list[dict[str, set[str]]]] = defaultdict(
    lambda: [{k: set() for k in KINDS}]
)
_snapshots: dict[tuple[str, bool, int], dict] = {}


class HostSnapshot(FactBase):
    """
    Owner, group, mode (and SHA-256 for files) of paths, and the state of systemd units.

    .. code:: python

        {"files": {"/etc/redis/redis.conf": {"user": "root", "group": "redis", "mode": 640,
                                             "sha256": "…"}, "/etc/absent": None},
         "dirs": {"/opt/orchestra": {"user": "root", "group": "orchestra", "mode": 755}},
         "units": {"redis-server": {"active": True, "enabled": True}}}
    """

    def command(self, files=(), dirs=(), units=()) -> str:
        q = " ".join
        return "; ".join([
            f"for p in {q(map(shlex.quote, files))}; do if [ -f \"$p\" ]; then "
            "printf 'F\\t%s\\t%s\\t%s\\n' \"$p\" \"$(stat -c '%U %G %a' \"$p\")\" "
            "\"$(sha256sum \"$p\" | cut -d' ' -f1)\"; elif [ -e \"$p\" ]; then "
            "printf 'F\\t%s\\tnot-a-file\\n' \"$p\"; else printf 'F\\t%s\\t-\\n' \"$p\"; fi; done",
            f"for p in {q(map(shlex.quote, dirs))}; do if [ -d \"$p\" ]; then "
            "printf 'D\\t%s\\t%s\\n' \"$p\" \"$(stat -c '%U %G %a' \"$p\")\"; "
            "else printf 'D\\t%s\\t-\\n' \"$p\"; fi; done",
            f"for u in {q(map(shlex.quote, units))}; do printf 'U\\t%s\\t%s\\n' \"$u\" "
            "\"$(systemctl show -p ActiveState -p UnitFileState --value \"$u\" | tr '\\n' ' ')\"; "
            "done",
        ])

    def process(self, output):
        snapshot: dict[str, dict] = {kind: {} for kind in KINDS}
        for line in output:
            kind, name, *rest = line.split("\t")
            if kind == "F":
                snapshot["files"][name] = _file(rest)
            elif kind == "D":
                snapshot["dirs"][name] = None if rest[0] == "-" else _owner_mode(rest[0])
            elif kind == "U":
                active, _, unit_file = rest[0].strip().partition(" ")
                snapshot["units"][name] = {
                    "active": active in ("active", "activating", "reloading"),
                    "enabled": unit_file in ("enabled", "enabled-runtime", "static", "generated",
                                             "indirect", "alias"),
                    "exists": unit_file != "",
                }
        return snapshot


def _owner_mode(text: str) -> dict:
    user, group, mode = text.split()
    return {"user": user, "group": group, "mode": int(mode)}


def _file(rest: list[str]):
    if rest[0] == "-":
        return None
    if rest[0] == "not-a-file":
        raise ValueError("exists and is not a regular file")
    return {**_owner_mode(rest[0]), "sha256": rest[1]}


def registers(kind: str, argument: str):
    """Decorate an operation so that planning it registers ``kwargs[argument]``."""

    def decorate(op):
        @wraps(op)
        def planned(*args, **kwargs):
            _registered[host.name][-1][kind].add(kwargs[argument])
            return op(*args, **kwargs)

        planned._inner = op._inner
        return planned

    return decorate


def new_generation() -> None:
    """Operations planned from now on read state taken after the ones planned before."""
    _registered[host.name].append({k: set() for k in KINDS})


def lookup(kind: str, key: str):
    """The state of a registered path or unit; one remote command serves all of them."""
    generations = _registered[host.name]
    found = [i for i, registered in enumerate(generations) if key in registered[kind]]
    if not found:
        return _single(kind, key)  # called through _inner: nothing was registered
    generation = found[-1]
    registered = generations[generation]
    cache_key = (host.name, bool(getattr(state, "is_executing", False)), generation)
    snapshot = _snapshots.get(cache_key)
    if snapshot is None or key not in snapshot[kind]:
        snapshot = host.get_fact(HostSnapshot, **{k: tuple(sorted(v)) for k, v in
                                                  registered.items()})
        _snapshots[cache_key] = snapshot
    return snapshot[kind][key]


def _single(kind: str, key: str):
    if kind == "files":
        return host.get_fact(FileState, path=key)
    snapshot = host.get_fact(HostSnapshot, **{kind: (key,)})
    return snapshot[kind][key]
