"""The reprovision chain's guards and its timing report (the chain itself: the e2e drill)."""

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
