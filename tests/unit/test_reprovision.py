"""The reprovision chain's guards and its timing report (the chain itself: the e2e drill)."""

import re
import socket

import pytest

from orchestra_infra import reprovision


def test_unknown_environment_and_missing_target_stop_before_anything():
    with pytest.raises(reprovision.StageFailed, match="unknown environment 'nowhere'"):
        reprovision.run("nowhere", address="203.0.113.1")
    with pytest.raises(reprovision.StageFailed, match="either an address or what to launch"):
        reprovision.run("sandbox")
    launch = reprovision.Launch("gpu_1x_a10", "us-east-1", "orchestra")
    with pytest.raises(reprovision.StageFailed, match="either an address or what to launch"):
        reprovision.run("sandbox", address="203.0.113.1", launch=launch)


def test_each_stage_is_timed_and_reported_even_when_it_fails():
    lines = []
    stages = reprovision.Stages(lines.append)
    assert stages.run("deploy", lambda: 7) == 7
    with pytest.raises(reprovision.StageFailed):
        stages.run("restore", lambda: (_ for _ in ()).throw(reprovision.StageFailed("no")))
    assert list(stages.seconds) == ["deploy", "restore"]
    assert lines[0] == "--> deploy" and lines[-1].startswith("    restore: ")
    report = stages.report().splitlines()
    assert [line.split()[0] for line in report] == ["deploy", "restore", "total"]


def test_ssh_wait_is_bounded():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(reprovision.StageFailed, match="did not answer within 0 s"):
        reprovision._wait_for_ssh("127.0.0.1", timeout=0, port=port)


@pytest.mark.parametrize("answer, refused", [
    (("staging\n", None), "203.0.113.5 serves environment 'staging' (recorded in "
                          "/var/lib/orchestra-infra/environment), not 'prod'"),
    ((None, "cannot connect to 203.0.113.5:22: timed out"),
     "cannot read /var/lib/orchestra-infra/environment on 203.0.113.5: cannot connect"),
    (("prod\n", None), None),
    (("", None), None),  # a new host
])
def test_a_host_recording_another_environment_is_refused(monkeypatch, answer, refused):
    monkeypatch.setenv("ORCHESTRA_PROD_HOSTS", "203.0.113.5")
    scripts = []

    def read(target, script):
        scripts.append((target.name, script))
        return answer

    if refused:
        with pytest.raises(reprovision.StageFailed, match=re.escape(refused)):
            reprovision.check_environment("prod", "203.0.113.5", {}, read=read)
    else:
        reprovision.check_environment("prod", "203.0.113.5", {}, read=read)
    assert scripts == [("203.0.113.5", "cat /var/lib/orchestra-infra/environment 2>/dev/null "
                                       "|| true\n")]
