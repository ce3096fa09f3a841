"""The port preflight: the stack's own processes pass, anything else stops the deploy."""

import pytest

from operations.facts import ListeningSockets
from operations.ports import apply, plan, record_problems
from orchestra_infra import config
from orchestra_infra.schema import validate
from orchestra_infra.secrets import NAMES

SS = [
    'LISTEN 0 4096 127.0.0.1:8006 0.0.0.0:* users:(("python3",pid=812,fd=3))',
    'LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=90,fd=3))',
    'LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=90,fd=4))',
    'LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=5,fd=6),("nginx",pid=4,fd=6))',
    'LISTEN 0 244 127.0.0.1:5432 0.0.0.0:* users:(("postgres",pid=300,fd=5))',
    "---",
    "812 orchestra python3",
    "90 root sshd",
    "5 www-data nginx",
    "4 root nginx",
    "300 postgres postgres",
]


def _config(**overrides):
    return validate({**config.environment_data("sandbox"), **overrides}, NAMES)


def test_listening_sockets_fact():
    ports = ListeningSockets().process(SS)
    assert ports[8006] == [{"process": "python3", "user": "orchestra", "pid": 812}]
    assert ports[22] == [{"process": "sshd", "user": "root", "pid": 90}]
    assert [h["user"] for h in ports[443]] == ["www-data", "root"]


def test_the_stacks_own_processes_pass():
    assert plan(_config(), ListeningSockets().process(SS), {}) == ({}, [])


SQUATTER = {8006: [{"process": "python3", "user": "root", "pid": 812}]}


def test_a_foreign_process_is_named_with_its_port():
    assert plan(_config(), SQUATTER, {}) == ({}, [
        "port 8006 (mcp_servers.task) is held by python3 (pid 812, user root), which this "
        "stack does not manage"
    ])


def test_another_program_on_the_postgres_port():
    other = {5432: [{"process": "mysqld", "user": "mysql", "pid": 7}]}
    assert plan(_config(), other, {})[1][0].startswith(
        "port 5432 (postgres_port) is held by mysqld (pid 7, user mysql)")


def test_an_internal_port_moves_to_the_first_free_one_and_every_config_follows():
    squatted = {**SQUATTER, 8100: [{"process": "java", "user": "root", "pid": 9}]}
    assignments, problems = plan(_config(ports_auto_reassign=True), squatted, {})
    assert (assignments, problems) == ({"mcp_servers.task": 8101}, [])
    moved = apply(_config(ports_auto_reassign=True), assignments)
    assert moved.mcp_servers["task"].port == 8101
    assert moved.mcp_servers["memory"].port == 8003
    assert moved.port_table()["mcp_servers.task"] == 8101


def test_a_recorded_port_is_kept_once_the_squatter_is_gone():
    assert plan(_config(ports_auto_reassign=True), {}, {"mcp_servers.task": 8101}) == (
        {"mcp_servers.task": 8101}, [])


def test_api_instances_move_as_one_block():
    squatted = {8001: [{"process": "nc", "user": "root", "pid": 3}],
                8100: [{"process": "nc", "user": "root", "pid": 4}]}
    config = _config(ports_auto_reassign=True, api_instances=2)
    assignments, problems = plan(config, squatted, {})
    assert (assignments, problems) == ({"api_port": 8101}, [])
    assert apply(config, assignments).port_table()["api_port+1"] == 8102


def test_an_mcp_servers_instances_move_as_one_block():
    # Instance 1 of task (8016) is squatted; 8101 is taken, so 8101 + 10 cannot be its pair.
    squatted = {8016: [{"process": "nc", "user": "root", "pid": 3}],
                8110: [{"process": "nc", "user": "root", "pid": 4}]}
    config = _config(ports_auto_reassign=True, mcp_instances=2, mcp_instance_port_step=10)
    assignments, problems = plan(config, squatted, {})
    assert (assignments, problems) == ({"mcp_servers.task": 8101}, [])
    table = apply(config, assignments).port_table()
    assert (table["mcp_servers.task"], table["mcp_servers.task+1"]) == (8101, 8111)


def test_public_and_data_ports_never_move():
    other = {5432: [{"process": "mysqld", "user": "mysql", "pid": 7}]}
    assignments, problems = plan(_config(ports_auto_reassign=True), other, {})
    assert assignments == {} and problems[0].startswith("port 5432 (postgres_port)")


def test_a_full_range_is_named():
    taken = {**SQUATTER, 8100: [{"process": "nc", "user": "root", "pid": 4}]}
    config = _config(ports_auto_reassign=True, ports_reassign_range=(8100, 8101),
                     mcp_servers={"task": {"port": 8006}, "memory": {"port": 8101}})
    assert plan(config, taken, {})[1] == [
        "port 8006 (mcp_servers.task) is held by python3 (pid 812, user root), which this "
        "stack does not manage; no free port left in ports_reassign_range (8100, 8101)"]


def test_a_removed_server_drops_out_of_the_record():
    assert plan(_config(), {}, {"mcp_servers.gone": 8105}) == ({}, [])


# --- the host's record of moved ports is input too ---------------------------------------------

RECORD = "/var/lib/orchestra-infra/ports.json"


def test_a_valid_record_passes():
    assert record_problems(_config(), {"mcp_servers.task": 8100, "api_port": 8200}, RECORD) == []
    assert record_problems(_config(), {}, RECORD) == []


@pytest.mark.parametrize(("recorded", "problem"), [
    ("not JSON (Expecting value, line 1 column 1)",
     f"{RECORD}: not JSON (Expecting value, line 1 column 1)"),
    ([8100], f"{RECORD}: expected a JSON object of port table keys and ports, got list"),
    ({"postgres_port": 5433},
     f"{RECORD}: 'postgres_port': not a port this deploy moves (api_port, mcp_servers.NAME)"),
    ({"mcp_servers.task; rm -rf /": 8100},
     f"{RECORD}: 'mcp_servers.task; rm -rf /': not a port this deploy moves (api_port, "
     "mcp_servers.NAME)"),
    ({"mcp_servers.task": "8100; id"}, f"{RECORD}: mcp_servers.task: '8100; id' is not a port "
     "number"),
    ({"mcp_servers.task": True}, f"{RECORD}: mcp_servers.task: True is not a port number"),
    ({"mcp_servers.task": 80},
     f"{RECORD}: mcp_servers.task: 80 is not a port an internal service may use (1024-65535)"),
    ({"api_port": 65535},
     f"{RECORD}: api_port: 65535 is not a port an internal service may use (1024-65535)"),
    ({"mcp_servers.task": 5432},
     f"{RECORD}: mcp_servers.task.port: 5432 is already used by postgres_port"),
])
def test_a_bad_record_is_named_by_file_and_key(recorded, problem):
    assert record_problems(_config(), recorded, RECORD) == [problem]
