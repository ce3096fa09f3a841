"""pyinfra's CLI orders operations by the line numbers of their call stacks.

For every operation, on every host, pyinfra 3 calls ``inspect.stack()`` and then
``inspect.getframeinfo()`` on each frame (``pyinfra/api/util.py``). For each frame inspect
looks up the module the frame's file belongs to. A deploy file is executed by pyinfra, not
imported: no module has it as its file, and inspect scans all of ``sys.modules`` (about
1,500 entries) again for each of its frames, each time. Telling inspect's own file-to-module
cache which module to answer for the deploy file takes that scan away: 40 % fewer Python
calls while a four-host layout is planned (docs/benchmarks.md, "The four-host no-op run").
The order pyinfra computes is the same: it reads only the frames' file names and lines.
"""

from __future__ import annotations

import inspect
import os


def known_to_inspect(deploy_file: str) -> None:
    """Answer for ``deploy_file``'s frames from inspect's cache (``__main__``, pyinfra's
    command); nothing where this Python's inspect keeps no such cache."""
    cache = getattr(inspect, "modulesbyfile", None)
    if isinstance(cache, dict):
        path = os.path.normcase(os.path.abspath(deploy_file))
        cache.setdefault(path, "__main__")
        cache.setdefault(os.path.realpath(path), "__main__")
