"""Operations tested as data, pyinfra's way: faked facts in, exact commands out.

One folder per operation under tests/unit/operations/<module>.<operation>/, one JSON
case per file (see the pyinfra-testing package).
"""

from pathlib import Path

from pyinfra_testing.operations import make_operation_tests

TESTS_BASE = Path(__file__).parent / "operations"

for _path in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_path] = make_operation_tests("operations", _path, TESTS_BASE / _path)
