"""Facts tested as data: command output in, fact value out (tests/unit/facts/<module>.<Fact>/)."""

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests

from operations import facts

TESTS_BASE = Path(__file__).parent / "facts"

for _path in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_path] = make_fact_tests("operations", _path, TESTS_BASE / _path)


def test_facts_of_what_is_not_there_yet_default_to_empty():
    """A first deploy: no Monit, no recorded port moves, no restore script output."""
    assert facts.MonitStates.default() == {}
    assert facts.PortAssignments().default() == {}
    assert facts.DataPresence().default() == []
    assert facts.ResticSnapshots().default() == []
