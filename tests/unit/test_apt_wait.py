"""The wait for apt's and dpkg's locks, run for real in a shell against a scripted lslocks."""

import subprocess
import textwrap

import pytest

from operations import base

HELD = "801 /var/lib/dpkg/lock-frontend"


@pytest.fixture
def lslocks(tmp_path):
    """A fake lslocks that reports the lock held for the first N calls, then free."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "lslocks"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        n=$(cat {tmp_path}/calls 2>/dev/null || echo 0)
        echo $((n + 1)) > {tmp_path}/calls
        echo "612 /run/systemd/timesync/clock"
        [ "$n" -lt "$(cat {tmp_path}/held_for)" ] && echo "{HELD}"
        exit 0
        """))
    script.chmod(0o755)

    def run(held_for: int, timeout: int):
        (tmp_path / "held_for").write_text(str(held_for))
        return subprocess.run(["sh", "-c", base.wait_for_apt_script(timeout, interval=1)],
                              capture_output=True, text=True, timeout=30,
                              env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    return run


def test_waits_while_held_and_goes_on_when_released(lslocks):
    result = lslocks(held_for=2, timeout=10)
    assert result.returncode == 0
    assert "apt/dpkg still busy, waited 0 s" in result.stdout


def test_free_at_once_goes_on_at_once(lslocks):
    result = lslocks(held_for=0, timeout=10)
    assert (result.returncode, result.stdout) == (0, "")


def test_stops_after_the_timeout_naming_the_holder_and_kills_nothing(lslocks):
    result = lslocks(held_for=100, timeout=2)
    assert result.returncode == 1
    assert "locks still held after 2 s (apt_lock_timeout)" in result.stderr
    assert "/var/lib/dpkg/lock-frontend: pid 801:" in result.stderr
    assert "kill" not in base.wait_for_apt_script(2).replace("kills nothing", "")
