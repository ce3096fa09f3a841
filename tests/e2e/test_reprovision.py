"""The instance is gone: a new one from the (stand-in) Lambda API, the deploy, the restore.

Host A (the provisioned target) backs up to a restic repository on the peer over SFTP;
A is destroyed; ``orchestra-infra reprovision sandbox --launch …`` asks the Lambda
stand-in for an instance, which boots bare sandbox host B, and chains deploy -> restore
-> status onto B. Every note, cache key and vector written before the backup must be
readable on B. This module runs last (conftest.py): it destroys the shared target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestra_infra import sandbox, secrets
from standins.lambda_cloud import LambdaStandin

from .conftest import PREFIX, REPO, converge
from .test_apps import _request
from .test_data_services import _redis

pytestmark = pytest.mark.e2e

NEW_HOST = f"{PREFIX}-new"
LAMBDA_KEY = "standin-" + "k" * 32


def _cli(*args: str, env: dict[str, str], timeout: float = 2400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestra_infra", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **env})


@pytest.fixture
def sftp_repository(target, peer, monkeypatch):
    """Back up to the peer over SFTP, with the sandbox key as the repository's SSH key."""
    keyscan = subprocess.run(["ssh-keyscan", "-t", "ed25519", peer.address],
                             capture_output=True, text=True, check=True, timeout=30)
    known = [line for line in keyscan.stdout.splitlines() if not line.startswith("#")]
    monkeypatch.setenv("ORCHESTRA_SECRET_RESTIC_SFTP_PRIVATE_KEY",
                       Path(peer.ssh_key).read_text())
    return (f"restic_repository=sftp:ubuntu@{peer.address}:/home/ubuntu/restic",
            f"backup_sftp_known_hosts={json.dumps(known)}")


def test_a_lost_instance_comes_back_with_its_data(target, provisioned, sftp_repository):
    data_args = [arg for pair in sftp_repository for arg in ("--data", pair)]
    converge(target, *data_args)
    notes = []
    for i in range(3):
        status, _, note = _request(target, "/api/notes", "POST",
                                   {"title": f"drill {i}", "body": f"before the loss {i}"})
        assert status == 201, note
        notes.append(note)
    app_password = secrets.load("sandbox")["redis_app_password"]
    _redis(target, "orchestra", app_password, "SET drill:cache kept")

    only_a = {"ORCHESTRA_SANDBOX_HOSTS": target.name}
    backup = _cli("backup", "sandbox", env=only_a, timeout=600)
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-3000:]
    backed_up_at = time.monotonic()

    sandbox.down([target.name])  # the instance is gone, with its disk
    lost_at = time.monotonic()

    booted = []

    def boot_new_host(_instance) -> str:  # what "launch" does behind the stand-in
        booted.extend(sandbox.up(names=[NEW_HOST]))
        return booted[0].address

    with LambdaStandin(api_key=LAMBDA_KEY, boot_delay=0.5,
                       address_source=boot_new_host) as standin:
        try:
            run = _cli("reprovision", "sandbox", "-y", "--launch", "gpu_1x_a10",
                       "--region", "us-east-1", "--ssh-key", "orchestra",
                       "--filesystem", "orchestra-data", *data_args,
                       env={"ORCHESTRA_LAMBDA_API_URL": f"{standin.url}/api/v1",
                            "ORCHESTRA_SECRET_LAMBDA_API_KEY": LAMBDA_KEY})
            recovered_at = time.monotonic()
            output = run.stdout + run.stderr
            assert run.returncode == 0, output[-6000:]
            assert [launch["instance_type_name"] for launch in standin.launches] == \
                ["gpu_1x_a10"]
            new = booted[0]
            for note in notes:
                status, _, body = _request(new, f"/api/notes/{note['id']}")
                assert (status, body["body"]) == (200, note["body"])
                status, _, vector = _request(new, f"/api/notes/{note['id']}/vector-object")
                assert status == 200 and vector["properties"]["note_id"] == note["id"]
            assert _redis(new, "orchestra", app_password, "GET drill:cache") == "kept"
            # Its backups start with the restore, not with the deploy (issue 11).
            assert sandbox.run(new.name, "cat /var/lib/orchestra-infra/backup/ready")\
                .stdout.startswith("restored ")
            assert sandbox.run(new.name, "systemctl is-enabled orchestra-backup.timer")\
                .stdout.strip() == "enabled"
            rto, rpo = recovered_at - lost_at, lost_at - backed_up_at
            print(f"reprovision drill: RTO {rto:.0f} s (loss -> all healthy on the new host), "
                  f"RPO {rpo:.0f} s (loss - last backup); stages:\n"
                  + output[output.rindex("  instance"):])
        finally:
            sandbox.down([NEW_HOST])

