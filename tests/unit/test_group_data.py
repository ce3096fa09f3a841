"""group_data/all.py names what pyinfra reads from it (``__all__``): the same names pyinfra
would keep by parsing the file for its imports, which it does once per name otherwise."""

import ast
import runpy
from pathlib import Path

ALL = Path(__file__).parents[2] / "group_data" / "all.py"


def test_all_names_every_setting_and_no_import():
    attrs = runpy.run_path(str(ALL))
    imported = {alias.asname or alias.name for node in ast.parse(ALL.read_text()).body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    wanted = {k for k in attrs if not k.startswith("__") and k not in imported}
    assert set(attrs["__all__"]) == wanted
    assert "_sudo" in wanted and "ssh_paramiko_connect_kwargs" in wanted
