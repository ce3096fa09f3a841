"""Which release a rollback goes to: the one live before the live one. The order comes from
the host (operations.facts.AppReleases: `ls -t` of each release's .ready, which app.switch
touches as it makes a release live), run here on a real directory."""

from __future__ import annotations

import os
import subprocess

from operations import app
from operations.facts import AppReleases


def _releases(root, history: list[str]) -> dict:
    """Build and switch releases in the order of history (a name once per switch), as the
    deploy does: a release is built once; each switch touches it and points current at it."""
    base = 1_700_000_000
    for step, name in enumerate(history):
        release = root / "releases" / name
        release.mkdir(parents=True, exist_ok=True)
        (release / ".ready").touch()
        for path in (release, release / ".ready"):  # what app.switch's `touch` does
            os.utime(path, (base + step, base + step))
        (root / "current.new").unlink(missing_ok=True)
        (root / "current.new").symlink_to(release)
        (root / "current.new").replace(root / "current")
    fact = AppReleases()
    output = subprocess.run(["sh", "-c", fact.command(str(root))], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return fact.process(output)


def test_a_rollback_goes_to_the_release_that_was_live_before(tmp_path):
    # v1, then v2 (bad: rolled back to v1), then v3: a rollback from v3 goes to v1, not v2.
    releases = _releases(tmp_path, ["v1", "v2", "v1", "v3"])
    assert releases["live"] == "v3"
    assert releases["built"] == ["v3", "v1", "v2"]
    assert app.release_before(releases) == "v1"


def test_a_second_rollback_returns_to_the_release_rolled_back_from(tmp_path):
    releases = _releases(tmp_path, ["v1", "v2", "v1"])
    assert app.release_before(releases) == "v2"


def test_nothing_to_roll_back_to_on_a_first_release(tmp_path):
    assert app.release_before(_releases(tmp_path, ["v1"])) is None
