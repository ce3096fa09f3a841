"""The pure parts of the sandbox: addresses, debootstrap commands, state, argv building."""

import json

import pytest
from click.testing import CliRunner

from orchestra_infra import sandbox
from orchestra_infra.sandbox import prerequisites
from orchestra_infra.sandbox_cli import sandbox as cli


@pytest.fixture(autouse=True)
def sandbox_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRA_SANDBOX_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("ORCHESTRA_SANDBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SANDBOX_MIRROR", raising=False)
    return tmp_path


# --- addresses ---


def test_slots_are_consecutive_slash_30s_with_host_end_1_and_sandbox_end_2():
    assert sandbox.slot_addresses(0) == ("10.213.0.1", "10.213.0.2")
    assert sandbox.slot_addresses(1) == ("10.213.0.5", "10.213.0.6")
    assert sandbox.slot_addresses(63) == ("10.213.0.253", "10.213.0.254")


def test_slot_outside_the_subnet_is_refused():
    with pytest.raises(sandbox.SandboxError, match="no sandbox subnet #64"):
        sandbox.slot_addresses(64)


def test_slot_of_either_end_is_its_subnet():
    assert sandbox.slot_of("10.213.0.2") == 0
    assert sandbox.slot_of("10.213.0.5") == 1
    assert sandbox.slot_of("10.213.0.254") == 63


def test_allocation_takes_the_lowest_free_slot():
    assert sandbox.allocate_slot([]) == 0
    assert sandbox.allocate_slot(["10.213.0.2", "10.213.0.10"]) == 1
    assert sandbox.allocate_slot(["10.213.0.2", "10.213.0.6"]) == 2


def test_allocation_fails_clearly_when_the_subnet_is_full():
    every = [sandbox.slot_addresses(s)[1] for s in range(64)]
    with pytest.raises(sandbox.SandboxError, match="all 64 sandbox subnets"):
        sandbox.allocate_slot(every)


def test_new_entry_records_both_ends_and_names_derived_from_the_slot(sandbox_dirs):
    entry = sandbox.new_entry("orch-2", "debian12", 1)
    assert entry["address"] == "10.213.0.6"
    assert entry["host_address"] == "10.213.0.5"
    assert entry["namespace"] == "orch-orch-2"
    assert entry["veth"] == "orchsb1"
    assert entry["rootfs"] == str(sandbox_dirs / "state" / "orch-2" / "rootfs")
    assert entry["pid"] is None


def test_veth_names_fit_the_kernel_limit():
    assert len(sandbox.veth_name(63)) <= 15


# --- names ---


@pytest.mark.parametrize("name", ["orch-1", "t-sbx-a", "a", "x" * 32])
def test_valid_names(name):
    sandbox.validate_name(name)


@pytest.mark.parametrize("name", ["", "-a", "a-", "Orch", "a_b", "a.b", "x" * 33, "../etc"])
def test_invalid_names(name):
    with pytest.raises(sandbox.SandboxError, match="invalid sandbox host name"):
        sandbox.validate_name(name)


def test_default_names():
    assert sandbox.default_names(3) == ["orch-1", "orch-2", "orch-3"]
    with pytest.raises(sandbox.SandboxError, match="at least 1"):
        sandbox.default_names(0)


# --- debootstrap ---

INCLUDE = "--include=systemd,systemd-sysv,dbus,openssh-server,python3,sudo,ca-certificates,iproute2"


def test_debian12_uses_debootstraps_default_mirror():
    assert sandbox.debootstrap_command("debian12", "/t", env={}) == [
        "debootstrap",
        "--variant=minbase",
        INCLUDE,
        "bookworm",
        "/t",
    ]


def test_debian12_ignores_sandbox_mirror():
    env = {"SANDBOX_MIRROR": "http://mirror.invalid/ubuntu"}
    assert sandbox.debootstrap_command("debian12", "/t", env=env)[-1] == "/t"


def test_ubuntu2204_builds_jammy_from_debootstraps_own_archive_in_two_stages():
    # No URL: debootstrap's jammy script knows Ubuntu's archive. --foreign: nothing from the
    # download runs before archive.py has verified it (this machine has no Ubuntu keyring).
    assert sandbox.debootstrap_command("ubuntu2204", "/t", env={}) == [
        "debootstrap",
        "--variant=minbase",
        INCLUDE,
        "--components=main,universe",
        "--foreign",
        "--no-check-gpg",
        "jammy",
        "/t",
    ]


def test_sandbox_mirror_overrides_ubuntus_archive():
    env = {"SANDBOX_MIRROR": " http://mirror.invalid/ubuntu "}
    argv = sandbox.debootstrap_command("ubuntu2204", "/t", env=env)
    assert argv[-2:] == ["/t", "http://mirror.invalid/ubuntu"]


def test_ubuntu_is_the_default_image():
    assert sandbox.DEFAULT_IMAGE == "ubuntu2204"
    image = next(p for p in cli.commands["up"].params if p.name == "image")
    assert image.default == "ubuntu2204"


def test_ubuntu_sources_cover_all_components_and_updates_from_the_same_mirror():
    assert sandbox.ubuntu_sources_list("http://m.invalid/ubuntu").splitlines() == [
        "deb http://m.invalid/ubuntu jammy main restricted universe multiverse",
        "deb http://m.invalid/ubuntu jammy-updates main restricted universe multiverse",
        "deb http://m.invalid/ubuntu jammy-security main restricted universe multiverse",
    ]


def test_unknown_image_is_refused():
    with pytest.raises(sandbox.SandboxError, match="unknown image 'centos'"):
        sandbox.debootstrap_command("centos", "/t", env={})


def test_tarball_name_is_stamped_with_the_recipe(sandbox_dirs):
    debian = sandbox.image_tarball("debian12", env={})
    assert debian.parent == sandbox_dirs / "cache"
    assert debian.name.startswith(f"rootfs-debian12-v{sandbox.IMAGE_RECIPE_VERSION}-")
    assert debian.suffix == ".tar"
    one = sandbox.image_tarball("ubuntu2204", env={})
    other = sandbox.image_tarball("ubuntu2204", env={"SANDBOX_MIRROR": "http://b.invalid/u"})
    assert one != other


# --- state ---


def test_missing_state_file_means_no_hosts():
    assert sandbox.read_state() == {}


def test_state_round_trip(sandbox_dirs):
    hosts = {n: sandbox.new_entry(n, "debian12", s) for s, n in enumerate(["b", "a"])}
    hosts["a"]["pid"] = 1234
    sandbox.write_state(hosts)
    assert sandbox.read_state() == hosts
    on_disk = json.loads((sandbox_dirs / "state" / "hosts.json").read_text())
    assert [h["name"] for h in on_disk["hosts"]] == ["a", "b"]
    assert not [p for p in (sandbox_dirs / "state").iterdir() if p.name.startswith(".hosts.")]


def test_corrupt_state_file_is_reported_with_its_path(sandbox_dirs):
    path = sandbox_dirs / "state" / "hosts.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(sandbox.SandboxError, match="corrupt sandbox state file .*hosts.json"):
        sandbox.read_state()


def test_status_and_inventory_report_a_dead_pid_as_not_running():
    entry = sandbox.new_entry("orch-1", "debian12", 0)
    entry["pid"] = 2**22 + 1  # above pid_max's default ceiling: never a live process
    sandbox.write_state({"orch-1": entry})
    assert sandbox.status() == [
        {
            "name": "orch-1",
            "address": "10.213.0.2",
            "image": "debian12",
            "running": False,
            "pid": 2**22 + 1,
        }
    ]
    assert sandbox.inventory_hosts() == []


# --- argv ---


def test_ssh_command_logs_in_as_ubuntu_with_our_key_and_no_host_key_memory(sandbox_dirs):
    sandbox.write_state({"orch-1": sandbox.new_entry("orch-1", "debian12", 0)})
    argv = sandbox.ssh_command("orch-1")
    assert argv[0] == "ssh"
    assert argv[argv.index("-i") + 1] == str(sandbox_dirs / "state" / "id_ed25519")
    assert "StrictHostKeyChecking=no" in argv
    assert "UserKnownHostsFile=/dev/null" in argv
    assert argv[-1] == "ubuntu@10.213.0.2"


def test_unknown_host_lists_the_known_ones():
    sandbox.write_state({"orch-1": sandbox.new_entry("orch-1", "debian12", 0)})
    with pytest.raises(sandbox.SandboxError, match=r"no sandbox host named 'x' \(known: orch-1\)"):
        sandbox.ssh_command("x")


def test_nspawn_boots_in_the_hosts_namespace_with_network_privileges():
    argv = sandbox.nspawn_command(sandbox.new_entry("orch-1", "debian12", 0))
    assert argv[0] == "systemd-nspawn"
    assert "--boot" in argv
    assert {"--register=no", "--keep-unit", "--private-network"} <= set(argv)
    assert "--network-namespace-path=/run/netns/orch-orch-1" in argv
    assert "--machine=orch-1" in argv


def test_a_shared_directory_is_bound_into_the_host(tmp_path):
    entry = sandbox.new_entry("orch-1", "debian12", 0)
    # /dev/net/tun always (wireguard-go's device); no directory of this machine by default.
    assert [a for a in sandbox.nspawn_command(entry) if a.startswith("--bind")] == [
        "--bind=/dev/net/tun"]
    entry["binds"] = [sandbox.validate_bind(f"{tmp_path}:/lambda/nfs/data")]
    assert f"--bind={tmp_path}:/lambda/nfs/data" in sandbox.nspawn_command(entry)


@pytest.mark.parametrize("bind", ["relative:/x", "/x:relative", "/a b:/x", "/x:/y/../z",
                                  "/nonexistent-dir-xyz:/x", "/tmp"])
def test_binds_are_plain_absolute_existing_directories(bind):
    with pytest.raises(sandbox.SandboxError, match="bind"):
        sandbox.validate_bind(bind)


def test_missing_tools_name_their_debian_packages(monkeypatch):
    present = {"ip", "ssh", "ssh-keygen", "tar"}
    monkeypatch.setattr(
        prerequisites.shutil, "which", lambda tool: f"/usr/bin/{tool}" if tool in present else None
    )
    with pytest.raises(sandbox.SandboxError) as error:
        sandbox.check_tools()
    message = str(error.value)
    assert "systemd-nspawn (package systemd-container)" in message
    assert "nft (package nftables)" in message
    assert "apt-get install debootstrap nftables systemd-container" in message


# --- command line ---


def test_cli_errors_are_one_line_messages_without_traceback(monkeypatch):
    monkeypatch.setattr(prerequisites.os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["up"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: sandbox hosts need root")
    assert "Traceback" not in result.output


def test_cli_status_json_lists_hosts():
    sandbox.write_state({"orch-1": sandbox.new_entry("orch-1", "debian12", 0)})
    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)[0]["address"] == "10.213.0.2"
