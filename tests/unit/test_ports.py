"""The port preflight: the stack's own processes pass, anything else stops the deploy."""

from operations.facts import ListeningSockets
from operations.ports import foreign_holders
from orchestra_infra import config
from orchestra_infra.schema import validate

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


def _config():
    return validate(config.environment_data("sandbox"))


def test_listening_sockets_fact():
    ports = ListeningSockets().process(SS)
    assert ports[8006] == [{"process": "python3", "user": "orchestra", "pid": 812}]
    assert ports[22] == [{"process": "sshd", "user": "root", "pid": 90}]
    assert [h["user"] for h in ports[443]] == ["www-data", "root"]


def test_the_stacks_own_processes_pass():
    assert foreign_holders(_config(), ListeningSockets().process(SS)) == []


def test_a_foreign_process_is_named_with_its_port():
    squatter = [line.replace("812 orchestra", "812 root") for line in SS]
    assert foreign_holders(_config(), ListeningSockets().process(squatter)) == [
        "port 8006 (mcp_servers.task) is held by python3 (pid 812, user root), which this "
        "stack does not manage"
    ]


def test_another_program_on_the_postgres_port():
    other = {5432: [{"process": "mysqld", "user": "mysql", "pid": 7}]}
    assert foreign_holders(_config(), other)[0].startswith(
        "port 5432 (postgres_port) is held by mysqld (pid 7, user mysql)")
