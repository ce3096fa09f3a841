"""One remote command reads the state of every file, directory and unit a run manages.

pyinfra 3 runs a fact's command every time an operation asks for it, and a converged run
is mostly such questions: about 10-30 ms each over SSH. The operations in render.py and
system.py register the path or unit they manage when they are planned; the first one to
ask reads all registered ones in one command (``HostSnapshot``) and later ones look the
answer up. The snapshot is taken again when execution starts (what planning saw may have
changed since), and an operation that manages a path is the only one that changes it.
Installing packages changes files and units wholesale: ``new_generation()`` after the
install makes everything planned later read a snapshot taken after it.

A preview (``--dry`` without ``-y``) plans each operation as it is registered, so the first
ones would each find their key missing from the snapshot taken so far and ask again (172
snapshots, 7 of a preview's 10 s on a whole-stack host). ``remember()``, at the end of the
deploy file, keeps what the plan registered in the control machine's cache; the next plan of
that host asks for all of it at once. Extra keys cost only a line of output each, and a
missing cache only the old cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections import defaultdict
from functools import wraps
from pathlib import Path

from pyinfra import host, state
from pyinfra.api import FactBase

from operations.facts import FileState

KINDS = ("files", "dirs", "units")
# host -> generation -> kind -> keys
_registered: dict[str, list[dict[str, set[str]]]] = defaultdict(
    lambda: [{k: set() for k in KINDS}]
)
_snapshots: dict[tuple[str, bool, int], dict] = {}
# host -> generation -> kind -> keys, as the last plan of the host registered them
_remembered: dict[str, list[dict[str, set[str]]]] = {}


class HostSnapshot(FactBase):
    """
    Owner, group, mode (and SHA-256 for files) of paths, and the state of systemd units.

    .. code:: python

        {"files": {"/etc/redis/redis.conf": {"user": "root", "group": "redis", "mode": 640,
                                             "sha256": "…"}, "/etc/absent": None},
         "dirs": {"/opt/weaviate": {"user": "root", "group": "root", "mode": 755}},
         "units": {"redis-server": {"active": True, "enabled": True}}}
    """

    def command(self, files=(), dirs=(), units=()) -> str:
        # A handful of processes whatever the number of paths: the loops are shell builtins,
        # then one stat, one sha256sum and one systemctl for all (a process per path and
        # unit took about 0.5 s for the ~110 of a full-stack host).
        q = " ".join
        parts = [
            f"set --; for p in {q(map(shlex.quote, files))}; do if [ -f \"$p\" ]; then "
            "set -- \"$@\" \"$p\"; elif [ -e \"$p\" ]; then printf 'F\\t%s\\tnot-a-file\\n' "
            "\"$p\"; else printf 'F\\t%s\\t-\\n' \"$p\"; fi; done; "
            "if [ $# -gt 0 ]; then stat --printf 'S\\t%n\\t%U %G %a\\n' -- \"$@\" && "
            "sha256sum -- \"$@\" | while read -r sum path; do "
            "printf 'H\\t%s\\t%s\\n' \"$path\" \"$sum\"; done; fi",
            f"set --; for p in {q(map(shlex.quote, dirs))}; do if [ -d \"$p\" ]; then "
            "set -- \"$@\" \"$p\"; else printf 'D\\t%s\\t-\\n' \"$p\"; fi; done; "
            "if [ $# -gt 0 ]; then stat --printf 'D\\t%n\\t%U %G %a\\n' -- \"$@\"; fi",
        ]
        if units:
            # One block per unit, in the order given, separated by an empty line.
            quoted = q(map(shlex.quote, units))
            parts.append(f"for u in {quoted}; do printf 'N\\t%s\\n' \"$u\"; done; "
                         f"systemctl show -p ActiveState -p UnitFileState -- {quoted} | "
                         "sed 's/^/U\\t/'")
        return "; ".join(parts)

    def process(self, output):
        snapshot: dict[str, dict] = {kind: {} for kind in KINDS}
        owners: dict[str, str] = {}
        sums: dict[str, str] = {}
        units: list[str] = []
        blocks: list[dict[str, str]] = [{}]
        for line in output:
            kind, _, rest = line.partition("\t")
            name, _, value = rest.partition("\t")
            if kind == "F":
                snapshot["files"][name] = _file([value])
            elif kind == "S":
                owners[name] = value
            elif kind == "H":
                sums[name] = value
            elif kind == "N":
                units.append(name)
            elif kind == "D":
                snapshot["dirs"][name] = None if value == "-" else _owner_mode(value)
            elif kind == "U":
                if rest:
                    key, _, setting = rest.partition("=")
                    blocks[-1][key] = setting
                else:
                    blocks.append({})
        for name, owner in owners.items():  # gone between the test and stat: absent
            snapshot["files"][name] = _file([owner, sums[name]]) if name in sums else None
        for unit, block in zip(units, filter(None, blocks), strict=True):
            unit_file = block.get("UnitFileState", "")
            snapshot["units"][unit] = {
                "active": block.get("ActiveState") in ("active", "activating", "reloading"),
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
    executing = bool(getattr(state, "is_executing", False))
    cache_key = (host.name, executing, generation)
    snapshot = _snapshots.get(cache_key)
    if snapshot is None or key not in snapshot[kind]:
        wanted = {k: set(v) for k, v in registered.items()}
        if not executing:  # planning: what the last plan registered too (see the docstring)
            for k, keys in _last_plan(generation).items():
                wanted[k] |= keys
        try:
            snapshot = _read(wanted)
        except ValueError:  # a remembered file that is no longer one: this plan's keys only
            if wanted == registered:
                raise
            snapshot = _read(registered)
        _snapshots[cache_key] = snapshot
    return snapshot[kind][key]


def _read(keys: dict[str, set[str]]) -> dict:
    return host.get_fact(HostSnapshot, **{k: tuple(sorted(v)) for k, v in keys.items()})


def _keys_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    name = hashlib.sha256(host.name.encode()).hexdigest()[:24]
    return Path(base) / "orchestra-infra" / "snapshot-keys" / f"{name}.json"


def _last_plan(generation: int) -> dict[str, set[str]]:
    if host.name not in _remembered:
        try:
            found = json.loads(_keys_file().read_text())
            _remembered[host.name] = [{k: {str(key) for key in g[k]} for k in KINDS}
                                      for g in found]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            _remembered[host.name] = []
    plans = _remembered[host.name]
    return plans[generation] if generation < len(plans) else {}


def remember() -> None:
    """Keep what this host's plan registered for its next plan (the control machine's
    cache; nothing is kept when it cannot be written)."""
    path = _keys_file()
    text = json.dumps([{k: sorted(g[k]) for k in KINDS} for g in _registered[host.name]])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(text)
        partial.replace(path)
    except OSError:
        pass


def _single(kind: str, key: str):
    if kind == "files":
        return host.get_fact(FileState, path=key)
    snapshot = host.get_fact(HostSnapshot, **{kind: (key,)})
    return snapshot[kind][key]
