"""The README's layout section matches the tree: every top-level entry is there, and every
entry it names exists."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Files every Python project has, not part of the layout.
OBVIOUS = {"README.md", "pyproject.toml", ".gitignore", ".ci"}


def _layout_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    names = set()
    for line in block.splitlines():
        if line and not line[0].isspace():
            names.update(n.split("/")[0] for n in re.split(r",\s*", line.split("  ")[0]))
    return names


def test_every_top_level_entry_is_in_the_layout():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    top = {f.split("/", 1)[0] for f in files} - OBVIOUS
    assert top - _layout_names() == set()


def test_every_entry_of_the_layout_exists():
    names = _layout_names() - {"secrets", "build"}  # gitignored, made when needed
    assert {n for n in names if not (ROOT / n).exists()} == set()
