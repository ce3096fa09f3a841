"""Set values in a secrets file by editing its lines, so the operator's comments survive.

``secrets init --rotate NAME`` used to load and dump the whole file, dropping every comment
and reordering keys. Here only the lines of the entries that change are replaced (a comment
at the end of the key's line is kept), new entries are appended, and the result is parsed
again and compared with what was meant; an edit that would read back differently is refused.
"""

from __future__ import annotations

import re

import yaml

from .errors import ConfigError


def _entry_line(name: str, value: str) -> str:
    return yaml.safe_dump({name: value}, default_flow_style=False, width=10_000).rstrip("\n")


def _comment(line: str) -> str:
    """The comment ending a ``key: plain-value  # ...`` line, with its spacing, or ''."""
    found = re.search(r"\s+#.*$", line)
    return found.group(0) if found else ""


def set_values(text: str, values: dict[str, str]) -> str:
    """``text`` with each of ``values`` set: its entry's lines replaced, or appended."""
    lines = text.splitlines()
    for name, value in values.items():
        key = re.compile(rf"{re.escape(name)}\s*:(\s|$)")
        start = next((i for i, line in enumerate(lines) if key.match(line)), None)
        if start is None:
            lines.append(_entry_line(name, value))
            continue
        end = start + 1
        # The entry goes on over indented lines (a block or folded value), and blank lines
        # between them; a comment or key at column 0 ends it.
        while end < len(lines) and (lines[end][:1] in (" ", "\t") or (
                not lines[end].strip() and end + 1 < len(lines)
                and lines[end + 1][:1] in (" ", "\t"))):
            end += 1
        comment = _comment(lines[start]) if end == start + 1 else ""
        lines[start:end] = [_entry_line(name, value) + comment]
    result = "\n".join(lines) + "\n"
    expected = dict(yaml.safe_load(text) or {})
    expected.update(values)
    if yaml.safe_load(result) != expected:
        raise ConfigError(["secrets file: could not set "
                           f"{', '.join(values)} without changing another entry; "
                           "edit the file by hand"])
    return result
