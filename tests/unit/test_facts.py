"""Facts tested as data: command output in, fact value out (tests/unit/facts/<module>.<Fact>/)."""

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests

TESTS_BASE = Path(__file__).parent / "facts"

for _path in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_path] = make_fact_tests("operations", _path, TESTS_BASE / _path)
