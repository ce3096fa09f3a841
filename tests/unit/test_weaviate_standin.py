"""weaviate-standin over real HTTP on 127.0.0.1, and the release-shaped tarball it ships in.

The API tests run the ``weaviate`` file taken out of a freshly built tarball, so what is tested
is what the deploy installs.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from standins import weaviate_release

VERSION = "1.32.2"
KEY = "standin-test-key-3f9a1c7e5b"  # recognisable, to look for it in the logs
OTHER_KEY = "standin-other-key-8d2e4b6a"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.02

# Never through a proxy from the environment: test traffic stays on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll condition until it returns something truthy; bounded in time and in attempts."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL_INTERVAL) + 1):
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_INTERVAL)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


CLUSTER_PORTS = ("CLUSTER_GOSSIP_BIND_PORT", "CLUSTER_DATA_BIND_PORT", "RAFT_PORT",
                 "RAFT_INTERNAL_RPC_PORT")


def base_env(data: Path, backups: Path) -> dict[str, str]:
    """The environment the deploy gives Weaviate (production-like: keys, no anonymous access)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PERSISTENCE_DATA_PATH": str(data),
        "CLUSTER_HOSTNAME": "node1",
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "backup-filesystem",
        "BACKUP_FILESYSTEM_PATH": str(backups),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
        "AUTHENTICATION_APIKEY_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ALLOWED_KEYS": f"{KEY},{OTHER_KEY}",
        "AUTHENTICATION_APIKEY_USERS": "app,admin",
        "QUERY_DEFAULTS_LIMIT": "25",
        "SOME_UNKNOWN_VARIABLE": "ignored, as Weaviate ignores it",
    }


class Standin:
    """One stand-in process on 127.0.0.1 with free ports (GRPC_PORT too, unless env sets it);
    its stderr goes to a file."""

    def __init__(self, executable: Path, env: dict[str, str], log_path: Path):
        self.port, self.grpc_port = free_port(), free_port()
        self.cluster_ports = {name: free_port() for name in CLUSTER_PORTS}
        self.log_path = log_path
        env = {"GRPC_PORT": str(self.grpc_port), "CLUSTER_BIND_ADDR": "127.0.0.1",
               "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
               **{name: str(port) for name, port in self.cluster_ports.items()}, **env}
        argv = [sys.executable, str(executable), "--host", "127.0.0.1", "--port", str(self.port),
                "--scheme", "http", "--read-timeout", "60s", "--write-timeout", "60s"]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method: str, path: str, body: Any = None,
                key: str | None = KEY) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=5) as resp:
                status, content = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, content = err.code, err.read()
        return status, json.loads(content) if content else None

    def is_ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the stand-in exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.request("GET", "/v1/.well-known/ready", key=None)[0] == 200
        except OSError:
            return False

    def wait_ready(self) -> Standin:
        wait_for(self.is_ready, READY_TIMEOUT, "the stand-in to be ready")
        return self

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)

    def logs(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, str, Path]:
    """The tarball built for VERSION, its digest, and the ``weaviate`` file unpacked from it."""
    out = tmp_path_factory.mktemp("release")
    path, digest = weaviate_release.build_weaviate_tarball(VERSION, out)
    unpacked = out / "unpacked"
    with tarfile.open(path) as tar:
        # filter= is Python 3.10.12+/3.11.4+; the project supports 3.10 and 3.11.2 (Debian 12)
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                    else {}))
    return path, digest, unpacked / "weaviate"


@pytest.fixture
def start(release, tmp_path) -> Iterator[Callable[..., Standin]]:
    """Start stand-ins in this test's directory (same data dir unless told otherwise); every one
    is stopped at the end, killed if SIGTERM is not enough."""
    started: list[Standin] = []

    def _start(data: Path | None = None, **overrides: str | None) -> Standin:
        env = base_env(data or tmp_path / "data", tmp_path / "backups")
        env.update({k: v for k, v in overrides.items() if v is not None})
        for key in [k for k, v in overrides.items() if v is None]:
            env.pop(key, None)
        standin = Standin(release[2], env, tmp_path / "standin.log")
        started.append(standin)
        return standin

    yield _start
    for standin in started:
        standin.stop()


@pytest.fixture(scope="module")
def server(release, tmp_path_factory) -> Iterator[Standin]:
    """One stand-in shared by the API tests; each test uses its own class names."""
    tmp = tmp_path_factory.mktemp("server")
    standin = Standin(release[2], base_env(tmp / "data", tmp / "backups"), tmp / "standin.log")
    try:
        yield standin.wait_ready()
    finally:
        standin.stop()


def unique_class(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- the tarball --------------------------------------------------------------------------------


def test_tarball_has_the_release_layout(release):
    path, _, _ = release
    assert path.name == "weaviate-v1.32.2-linux-amd64.tar.gz"
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    assert raw[3] & 0x08 == 0  # no file name in the gzip header
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["LICENSE", "README.md", "weaviate"]
        binary = tar.getmember("weaviate")
        source = tar.extractfile(binary).read().decode()
    assert binary.isreg() and binary.mode == 0o755
    assert all((m.uid, m.gid, m.uname, m.gname, m.mtime)
               == (0, 0, "root", "root", weaviate_release.FIXED_MTIME) for m in members)
    assert source.startswith("#!/usr/bin/env python3\n")
    assert 'VERSION = "1.32.2"\n' in source
    assert "THIS IS NOT WEAVIATE" in source


def test_tarball_is_reproducible_and_its_sha256_file_has_the_release_format(tmp_path, release):
    path_a, digest_a = weaviate_release.build_weaviate_tarball(VERSION, tmp_path / "a")
    path_b, digest_b = weaviate_release.build_weaviate_tarball(VERSION, tmp_path / "b")
    assert digest_a == digest_b == release[1]
    assert path_a.read_bytes() == path_b.read_bytes()
    assert hashlib.sha256(path_a.read_bytes()).hexdigest() == digest_a
    # Weaviate's release workflow writes the bare digest (echo $SHA256_SUM), no file name.
    sha_file = path_a.with_name(path_a.name + ".sha256")
    assert sha_file.read_text() == f"{digest_a}\n"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [path_a.name, sha_file.name]
    assert weaviate_release.build_weaviate_tarball("1.32.3", tmp_path / "c")[1] != digest_a


@pytest.mark.parametrize("version", ["v1.32.2", "1.32", '1.32.2"\nimport os #', ""])
def test_a_malformed_version_is_refused(tmp_path, version):
    with pytest.raises(ValueError, match="not a Weaviate version"):
        weaviate_release.build_weaviate_tarball(version, tmp_path)
    assert not tmp_path.joinpath("weaviate").exists()


def test_the_sandbox_reads_the_build_sandbox_up_recorded(tmp_path):
    # Before the build, validation of the sandbox's data says what to run.
    _, _, sha256 = weaviate_release.built_for_sandbox(tmp_path)
    assert sha256.endswith("is missing: run `orchestra-infra sandbox up`")
    weaviate_release.build_for_sandbox(tmp_path)
    version, tarball, sha256 = weaviate_release.built_for_sandbox(tmp_path)
    assert version == weaviate_release.SANDBOX_VERSION
    assert Path(tarball) == tmp_path / weaviate_release.weaviate_asset_name(version)
    assert hashlib.sha256(Path(tarball).read_bytes()).hexdigest() == sha256


def test_the_standin_is_python_3_10_syntax():
    # The targets run it with Ubuntu 22.04's python3 (3.10).
    ast.parse(weaviate_release.WEAVIATE_STANDIN_SOURCE.read_text(), feature_version=(3, 10))


def test_the_packaged_binary_runs_by_its_shebang_and_rejects_unknown_flags(release):
    result = subprocess.run([str(release[2]), "--host", "127.0.0.1", "--bogus"],
                            capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr


# --- startup checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    ({"PERSISTENCE_DATA_PATH": None}, "PERSISTENCE_DATA_PATH is required"),
    ({"PERSISTENCE_DATA_PATH": "{file}/data"}, "is not a writable directory"),
    ({"DEFAULT_VECTORIZER_MODULE": "text2vec-openai"}, "DEFAULT_VECTORIZER_MODULE"),
    ({"ENABLE_MODULES": "backup-filesystem,text2vec-openai"}, "text2vec-openai not implemented"),
    ({"BACKUP_FILESYSTEM_PATH": None}, "BACKUP_FILESYSTEM_PATH is required"),
    ({"AUTHENTICATION_APIKEY_USERS": "a,b,c"}, "length of users and keys must match"),
    ({"AUTHENTICATION_APIKEY_ALLOWED_KEYS": ""}, "need at least one valid allowed key"),
    ({"RAFT_BOOTSTRAP_EXPECT": "3"}, "RAFT_BOOTSTRAP_EXPECT must be 1"),
    ({"GRPC_PORT": "http"}, "GRPC_PORT='http' is not an integer"),
])
def test_a_bad_environment_stops_the_start_with_a_clear_message(start, tmp_path, overrides,
                                                                 message):
    (tmp_path / "file").write_text("")
    overrides = {k: v.format(file=tmp_path / "file") if v else v for k, v in overrides.items()}
    standin = start(**overrides)
    assert standin.proc.wait(STOP_TIMEOUT) == 1
    logs = standin.logs()
    fatal = [json.loads(line) for line in logs.splitlines() if '"fatal"' in line]
    assert fatal and message in fatal[-1]["msg"]
    assert KEY not in logs and OTHER_KEY not in logs


# --- well-known, authentication, meta, routing ----------------------------------------------------


def test_liveness_and_readiness_need_no_key(server):
    assert server.request("GET", "/v1/.well-known/live", key=None) == (200, None)
    assert server.request("GET", "/v1/.well-known/ready", key=None) == (200, None)
    assert server.request("GET", "/v1/.well-known/openid-configuration", key=None) == (404, None)


def test_everything_else_needs_a_valid_key(server):
    assert server.request("GET", "/v1/meta", key=None) == (401, {
        "code": 401,
        "message": "anonymous access not enabled, please provide an auth scheme such as OIDC"})
    assert server.request("GET", "/v1/schema", key="wrong") == (401, {
        "code": 401, "message": "invalid api key, please provide a valid api key"})
    assert server.request("POST", "/v1/objects", {"class": "Sneaky"}, key=None)[0] == 401
    assert server.request("GET", "/v1/meta", key=OTHER_KEY)[0] == 200
    assert server.request("GET", "/v1/schema/Sneaky")[0] == 404  # nothing was written


def test_meta_reports_the_version_built_in_and_says_it_is_a_standin(server):
    status, meta = server.request("GET", "/v1/meta")
    assert status == 200
    assert meta["hostname"] == f"http://127.0.0.1:{server.port}"
    assert meta["version"] == VERSION
    assert meta["standin"] is True
    assert "backup-filesystem" in meta["modules"]


def test_unknown_paths_methods_and_missing_features(server):
    assert server.request("GET", "/v1/nothing-here", key=None) == (
        404, {"code": 404, "message": "path /v1/nothing-here was not found"})
    status, body = server.request("PATCH", "/v1/schema")
    assert status == 405 and body["message"] == "method PATCH is not allowed, but [GET,POST] are"
    status, body = server.request("POST", "/v1/graphql", {"query": "{ Get { Note { t } } }"})
    assert status == 501 and "not implemented by weaviate-standin" in body["error"][0]["message"]


# --- schema ---------------------------------------------------------------------------------------


def test_schema_create_get_delete(server):
    name = unique_class("article")
    definition = {"class": name, "description": "kept as given",
                  "properties": [{"name": "title", "dataType": ["text"]}]}
    status, created = server.request("POST", "/v1/schema", definition)
    stored = name[0].upper() + name[1:]  # Weaviate capitalises class names
    assert status == 200
    assert created["class"] == stored and created["vectorizer"] == "none"
    assert created["description"] == "kept as given"
    assert server.request("GET", f"/v1/schema/{stored}") == (200, created)
    assert created in server.request("GET", "/v1/schema")[1]["classes"]
    assert server.request("POST", "/v1/schema", definition) == (422, {
        "error": [{"message": f'class name "{stored}" already exists'}]})
    assert server.request("DELETE", f"/v1/schema/{stored}") == (200, None)
    assert server.request("GET", f"/v1/schema/{stored}") == (404, None)
    assert server.request("DELETE", f"/v1/schema/{stored}") == (200, None)


@pytest.mark.parametrize("definition", [
    {"class": "Vectorised", "vectorizer": "text2vec-openai"},
    {"class": "Bad-Name"},
    {"class": "BadProperty", "properties": [{"name": "has space", "dataType": ["text"]}]},
    {"class": "NoType", "properties": [{"name": "title"}]},
])
def test_invalid_class_definitions_are_422(server, definition):
    status, body = server.request("POST", "/v1/schema", definition)
    assert status == 422 and body["error"][0]["message"]


# --- objects --------------------------------------------------------------------------------------


def test_object_create_read_update_delete(server):
    cls, obj_id = unique_class("Note"), str(uuid.uuid4())
    status, created = server.request("POST", "/v1/objects", {
        "class": cls, "id": obj_id, "properties": {"title": "a", "rank": 1}, "vector": [0.5, 1]})
    assert status == 200
    assert created["id"] == obj_id and created["vector"] == [0.5, 1.0]
    assert created["creationTimeUnix"] == created["lastUpdateTimeUnix"] > 0
    path = f"/v1/objects/{cls}/{obj_id}"
    status, fetched = server.request("GET", path)
    assert status == 200 and "vector" not in fetched  # only with ?include=vector
    assert fetched["properties"] == {"title": "a", "rank": 1}
    assert server.request("GET", f"{path}?include=vector")[1]["vector"] == [0.5, 1.0]
    assert server.request("GET", f"/v1/objects/{obj_id}")[1] == fetched
    assert server.request("HEAD", path)[0] == 204

    status, replaced = server.request("PUT", path, {"class": cls, "properties": {"title": "b"}})
    assert status == 200 and replaced["properties"] == {"title": "b"}
    assert replaced["creationTimeUnix"] == created["creationTimeUnix"]
    assert server.request("PATCH", path, {"properties": {"rank": 2}}) == (204, None)
    assert server.request("GET", path)[1]["properties"] == {"title": "b", "rank": 2}

    assert server.request("DELETE", path) == (204, None)
    assert server.request("GET", path) == (404, None)
    assert server.request("HEAD", path)[0] == 404
    assert server.request("DELETE", path) == (404, None)
    assert server.request("PUT", path, {"properties": {}}) == (404, None)


def test_auto_schema_creates_the_class_and_then_enforces_its_types(server):
    cls = unique_class("Auto")
    obj = {"class": cls, "properties": {"title": "t", "score": 1.5, "done": False,
                                        "tags": ["x"], "at": "2024-05-01T10:00:00Z"}}
    assert server.request("POST", "/v1/objects", obj)[0] == 200
    schema = server.request("GET", f"/v1/schema/{cls}")[1]
    assert {p["name"]: p["dataType"] for p in schema["properties"]} == {
        "title": ["text"], "score": ["number"], "done": ["boolean"], "tags": ["text[]"],
        "at": ["date"]}
    status, body = server.request("POST", "/v1/objects",
                                  {"class": cls, "properties": {"score": "high"}})
    assert status == 422 and "score" in body["error"][0]["message"]


def test_listing_objects_by_class_with_limit_and_offset(server):
    cls = unique_class("Listed")
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    for obj_id in ids:
        assert server.request("POST", "/v1/objects", {"class": cls, "id": obj_id})[0] == 200
    status, listed = server.request("GET", f"/v1/objects?class={cls}&limit=2")
    assert status == 200 and listed["totalResults"] == 2
    assert [o["id"] for o in listed["objects"]] == ids[:2]
    listed = server.request("GET", f"/v1/objects?class={cls}&limit=5&offset=2")[1]
    assert [o["id"] for o in listed["objects"]] == ids[2:]
    assert server.request("GET", "/v1/objects?class=NoSuchClass") == (404, None)
    assert server.request("GET", f"/v1/objects?class={cls}&limit=many")[0] == 422


def test_object_errors(server):
    cls, obj_id = unique_class("Errors"), str(uuid.uuid4())
    assert server.request("POST", "/v1/objects", {"class": cls, "id": obj_id,
                                                  "vector": [1, 2, 3]})[0] == 200
    assert server.request("POST", "/v1/objects", {"class": cls, "id": obj_id}) == (422, {
        "error": [{"message": f"id '{obj_id}' already exists"}]})
    assert server.request("GET", f"/v1/objects/{cls}/not-a-uuid")[0] == 422
    assert server.request("POST", "/v1/objects", {"class": cls, "id": "nope"})[0] == 422
    assert server.request("POST", "/v1/objects", {"properties": {}})[0] == 422
    status, body = server.request("POST", "/v1/objects", {"class": cls, "vector": [1]})
    assert status == 500 and "vector with length 1" in body["error"][0]["message"]


# --- persistence ----------------------------------------------------------------------------------


def test_every_acknowledged_write_survives_sigkill(start, tmp_path):
    first = start().wait_ready()
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for n, obj_id in enumerate(ids):
        obj = {"class": "Durable", "id": obj_id, "properties": {"n": n}, "vector": [n, 1.0]}
        assert first.request("POST", "/v1/objects", obj)[0] == 200
    assert first.request("DELETE", f"/v1/objects/Durable/{ids[0]}")[0] == 204
    assert first.request("PATCH", f"/v1/objects/Durable/{ids[1]}",
                         {"properties": {"n": 100}})[0] == 204
    assert first.request("POST", "/v1/schema", {"class": "EmptyButThere"})[0] == 200
    first.kill()  # SIGKILL: no chance to flush anything

    second = start().wait_ready()
    listed = second.request("GET", "/v1/objects?class=Durable&include=vector")[1]["objects"]
    assert {o["id"]: o["properties"]["n"] for o in listed} == {
        ids[1]: 100, ids[2]: 2, ids[3]: 3, ids[4]: 4}
    assert {o["id"]: o["vector"] for o in listed}[ids[3]] == [3.0, 1.0]
    assert second.request("GET", "/v1/schema/EmptyButThere")[0] == 200
    assert not list((tmp_path / "data").rglob("*.tmp"))


def test_a_damaged_data_file_stops_the_start(start, tmp_path):
    classes = tmp_path / "data" / "standin-classes"
    classes.mkdir(parents=True)
    (classes / "Broken.json").write_text('{"class": ')
    standin = start()
    assert standin.proc.wait(STOP_TIMEOUT) == 1
    assert "cannot load the data" in standin.logs()


# --- backups --------------------------------------------------------------------------------------


def _status_when_done(server: Standin, path: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status, body = server.request("GET", path)
        assert status == 200, body
        return body if body["status"] in ("SUCCESS", "FAILED") else None

    return wait_for(done, 10.0, f"{path} to finish")


def test_backup_then_restore_after_the_class_is_gone(server):
    cls, backup_id = unique_class("Kept"), f"b-{uuid.uuid4().hex[:8]}"
    ids = {str(uuid.uuid4()) for _ in range(2)}
    for obj_id in ids:
        assert server.request("POST", "/v1/objects", {"class": cls, "id": obj_id})[0] == 200

    status, started = server.request("POST", "/v1/backups/filesystem",
                                     {"id": backup_id, "include": [cls]})
    assert status == 200
    assert started["status"] == "STARTED" and started["backend"] == "filesystem"
    assert started["classes"] == [cls] and started["path"].endswith(f"/{backup_id}")
    done = _status_when_done(server, f"/v1/backups/filesystem/{backup_id}")
    assert done["status"] == "SUCCESS"
    home = Path(started["path"])
    assert json.loads((home / "backup_config.json").read_text())["status"] == "SUCCESS"
    assert (home / "node1" / f"{cls}.json").is_file()

    status, body = server.request("POST", "/v1/backups/filesystem", {"id": backup_id})
    assert status == 422 and "already exists" in body["error"][0]["message"]
    restore = f"/v1/backups/filesystem/{backup_id}/restore"
    assert server.request("POST", restore, {}) == (422, {"error": [
        {"message": f'cannot restore class "{cls}" because it already exists'}]})

    assert server.request("DELETE", f"/v1/schema/{cls}")[0] == 200
    status, started = server.request("POST", restore, {"include": [cls]})
    assert status == 200 and started["status"] == "STARTED"
    assert _status_when_done(server, restore)["status"] == "SUCCESS"
    listed = server.request("GET", f"/v1/objects?class={cls}")[1]["objects"]
    assert {o["id"] for o in listed} == ids


def test_backup_errors(server):
    assert server.request("POST", "/v1/backups/s3", {"id": "x"}) == (422, {"error": [
        {"message": 'no backup backend "s3", did you enable the right module?'}]})
    assert server.request("POST", "/v1/backups/filesystem", {"id": "Not/Valid"})[0] == 422
    assert server.request("GET", "/v1/backups/filesystem/never-made")[0] == 404
    assert server.request("POST", "/v1/backups/filesystem/never-made/restore", {})[0] == 404
    assert server.request("GET", "/v1/backups/filesystem/never-made/restore")[0] == 404
    status, body = server.request("POST", "/v1/backups/filesystem",
                                  {"id": "x", "include": ["NoSuchClass"]})
    assert status == 422 and "NoSuchClass" in body["error"][0]["message"]


# --- process behaviour ----------------------------------------------------------------------------


def test_sigterm_exits_0_and_the_json_logs_never_show_a_key(start):
    standin = start().wait_ready()
    standin.request("GET", "/v1/meta")
    standin.request("GET", "/v1/meta", key="wrong-" + KEY)
    standin.request("GET", f"/v1/schema?access_token={KEY}")
    assert standin.stop() == 0
    records = [json.loads(line) for line in standin.logs().splitlines()]
    requests = [r for r in records if r.get("action") == "restapi_request"]
    assert {(r["method"], r["path"], r["status"]) for r in requests} >= {
        ("GET", "/v1/meta", 200), ("GET", "/v1/meta", 401), ("GET", "/v1/schema", 200)}
    assert all({"level", "msg", "time"} <= r.keys() for r in records)
    assert records[-1]["msg"] == "shutdown complete"
    assert KEY not in standin.logs() and OTHER_KEY not in standin.logs()


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2) as conn:
            conn.settimeout(2)
            assert conn.recv(1) == b""  # accepted, then closed: no gRPC is spoken
        return True
    except ConnectionRefusedError:
        return False


def test_it_binds_where_weaviate_binds(start):
    """HTTP on --host only; gossip and Raft on CLUSTER_BIND_ADDR / CLUSTER_ADVERTISE_ADDR;
    gRPC and the cluster data port on every interface, as Weaviate's net.Listen(":PORT")."""
    standin = start().wait_ready()
    ports = standin.cluster_ports
    for port in (standin.port, ports["CLUSTER_GOSSIP_BIND_PORT"], ports["RAFT_PORT"],
                 ports["RAFT_INTERNAL_RPC_PORT"]):
        assert not _answers("127.0.0.2", port), port
    for port in (ports["CLUSTER_GOSSIP_BIND_PORT"], ports["RAFT_PORT"],
                 ports["RAFT_INTERNAL_RPC_PORT"], standin.grpc_port,
                 ports["CLUSTER_DATA_BIND_PORT"]):
        assert _answers("127.0.0.1", port), port
    for port in (standin.grpc_port, ports["CLUSTER_DATA_BIND_PORT"]):
        assert _answers("127.0.0.2", port), port
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError):  # the gossip port's UDP side is taken
        udp.bind(("127.0.0.1", ports["CLUSTER_GOSSIP_BIND_PORT"]))
    udp.close()


def test_cluster_settings_are_checked(start, tmp_path):
    for env, message in (
        ({"CLUSTER_BIND_ADDR": "localhost"}, "CLUSTER_BIND_ADDR='localhost' is not an IP address"),
        ({"RAFT_PORT": "x"}, "RAFT_PORT='x' is not an integer"),
    ):
        standin = start(**env)
        assert standin.proc.wait(timeout=30) == 1
        assert message in standin.logs()
