"""operations/stack_order.py: a deploy file's frames answered from inspect's cache."""

import inspect
import sys

from operations import stack_order


def _frame_of(path) -> object:
    """A frame of ``path`` executed the way pyinfra executes a deploy file."""
    path.write_text("import sys\nframe = sys._getframe()\n")
    scope = {"__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), scope)
    return scope["frame"]


def test_a_deploy_file_s_frame_needs_no_scan_of_every_module(tmp_path, monkeypatch):
    frame = _frame_of(tmp_path / "deploy.py")
    assert inspect.getmodule(frame) is None  # no module has it: the scan, every time

    scanned = []
    original = dict(sys.modules)
    monkeypatch.setattr(sys, "modules", type("Modules", (dict,), {
        "copy": lambda self: scanned.append(1) or dict(self)})(original))
    stack_order.known_to_inspect(str(tmp_path / "deploy.py"))
    assert inspect.getmodule(frame) is sys.modules["__main__"]
    info = inspect.getframeinfo(frame)
    assert (info.filename, info.lineno) == (str(tmp_path / "deploy.py"), 2)
    assert scanned == []
