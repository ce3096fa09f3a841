"""Hostile input: every value of the corpus (tests/unit/hostile_corpus.py) is either refused
by ``orchestra-infra check`` naming its key, before any host is touched, or shown harmless:
the whole deploy is captured with it (tests/unit/golden/capture.py, pyinfra's @fake
connector) and with a benign value of the same kind, and the two plans differ only inside
one shell word or one config value: no extra line, no extra shell word or operator.

    python -m tests.unit.test_hostile_input     # the tally: tried / rejected / proven harmless
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

from orchestra_infra import config as config_module
from orchestra_infra import secrets as secrets_module
from orchestra_infra.errors import ConfigError
from tests.unit.hostile_corpus import CORPUS, Case, make_local_repository

ROOT = Path(__file__).resolve().parent.parent.parent
CAPTURE = ROOT / "tests" / "unit" / "golden" / "capture.py"
PINNED = {"weaviate_sha256": "0" * 64}
KINDS = {"name", "path", "url", "email", "size", "port", "calendar", "timespan", "sysctl",
         "package", "known_hosts", "cipher", "secret"}


@contextmanager
def _secrets_env(extra: dict[str, str]):
    """Valid values for every required secret, the case's own on top; no secrets file."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("ORCHESTRA_SECRET_")]:
        del os.environ[key]
    os.environ["ORCHESTRA_SECRETS_DIR"] = "/nonexistent/orchestra-hostile-secrets"
    for spec in secrets_module.SPECS:
        if spec.required:
            os.environ[secrets_module.env_var(spec.name)] = f"valid-{spec.name}-0123456789"
    for name, value in extra.items():
        os.environ[secrets_module.env_var(name)] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check(case: Case) -> list[str]:
    """The problems ``orchestra-infra check prod`` reports for the case ([] = accepted)."""
    if any("\x00" in str(v) for v in case.secrets().values()):
        # No process environment can hold a NUL: what the secrets file would carry.
        problems = secrets_module.character_problems(
            secrets_module.SPEC_BY_NAME[case.secret], case.value)
        return problems or ["accepted"]
    with _secrets_env(case.secrets()):
        try:
            config_module.check("prod", {**PINNED, **case.data()})
        except ConfigError as e:
            return e.problems
    return []


@cache
def verdicts() -> dict[str, list[str]]:
    # group_data files are read once (they are Python: running them 700 times is most of the
    # time); every case is still checked through config.check, as `check` runs it.
    read = config_module.read_group_data
    files = cache(read)
    config_module.read_group_data = lambda path: dict(files(path))
    try:
        return {case.label(): check(case) for case in CORPUS}
    finally:
        config_module.read_group_data = read


def accepted() -> list[Case]:
    return [case for case in CORPUS if not verdicts()[case.label()]]


# --- proving an accepted value harmless --------------------------------------------------------


def _keys(case: Case) -> set[str]:
    return set(case.data()) | {f"secret:{name}" for name in case.secrets()}


def rounds(cases: list[Case]) -> list[list[Case]]:
    """Cases grouped so that no two in a group touch the same key: one capture each."""
    groups: list[list[Case]] = []
    for case in cases:
        for group in groups:
            if not any(_keys(case) & _keys(other) for other in group):
                group.append(case)
                break
        else:
            groups.append([case])
    return groups


def capture(data: dict, secrets: dict, distro: str = "ubuntu2204",
            responses: list | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ORCHESTRA_GOLDEN_DATA": json.dumps(data),
           "ORCHESTRA_GOLDEN_SECRETS": json.dumps(secrets),
           "ORCHESTRA_GOLDEN_RESPONSES": json.dumps(responses or [])}
    return subprocess.run([sys.executable, str(CAPTURE), distro], capture_output=True,
                          text=True, timeout=300, env=env)


def _merge(cases: list[Case], benign: bool) -> tuple[dict, dict]:
    data: dict = {}
    secrets: dict = {}
    for case in cases:
        value = case.benign if benign else None
        data.update(case.data(value))
        secrets.update(case.secrets(value))
    return data, secrets


def _words(line: str) -> list[str]:
    """Shell words and operators (; | & ( ) < >), and the words of every ``sh -c`` program."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    nested = []
    for i, word in enumerate(words):
        if i and words[i - 1] == "-c" and " " in word:
            nested += ["<c>", *_words(word), "</c>"]
    return words + nested


# Characters that are syntax in one of the config files a value may land in verbatim
# (nginx, Monit, sshd, YAML, INI, systemd): a value landing unquoted must hold none.
# known_hosts lines are data to ssh: their comment may hold anything printable.
CONFIG_SYNTAX = set(";{}#\"'\\`$")
SYNTAX_BY_FILE = {"known_hosts": set()}
OPERATORS = set(";|&()<>")


def _swap(text: str, mapping: dict[str, str]) -> str:
    for value, replacement in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(value, replacement)
    return text


def _shell_shape(hostile: str, benign: str) -> str | None:
    """Why the hostile program has other shell words or operators than the benign one."""
    try:
        hostile_words, benign_words = _words(hostile), _words(benign)
    except ValueError as e:
        return f"does not parse as shell words ({e})"
    if len(hostile_words) != len(benign_words):
        return f"{len(hostile_words)} shell words instead of {len(benign_words)}"
    for h, b in zip(hostile_words, benign_words, strict=True):
        if h != b and (set(h) <= OPERATORS or set(b) <= OPERATORS):
            return f"shell operator {h!r} where the benign plan has {b!r}"
    return None


def _records(plan: str) -> list[tuple[str, list[str]]]:
    """The plan as (head, lines): a command ("$ ...", continued over its lines) or a file
    ("> path" with its content)."""
    records: list[tuple[str, list[str]]] = []
    in_file = False
    for line in plan.splitlines():
        if in_file:
            if line == "<":
                in_file = False
            else:
                records[-1][1].append(line)
        elif line.startswith("> "):
            records.append((line, []))
            in_file = True
        elif line.startswith("$ ") or not records:
            records.append((line, []))
        else:
            records[-1][1].append(line)
    return records


def _file_harm(path: str, hostile: list[str], benign: list[str],
               mapping: dict[str, str]) -> list[str]:
    if len(hostile) != len(benign):
        return [f"{path}: {len(hostile)} lines instead of {len(benign)}"]
    name = path.rsplit("/", 1)[-1].split(".orchestra-new")[0]
    if name.endswith(".sh") or (benign and benign[0].startswith("#!") and "sh" in benign[0]):
        why = _shell_shape("\n".join(hostile), "\n".join(benign))
        if why is None or "does not parse" not in why or \
                _shell_shape("\n".join(benign), "\n".join(benign)) is None:
            return [f"{path}: {why}"] if why else []
        # A program shlex cannot read whole (case patterns, parameter expansions): each
        # value must then land verbatim and hold no shell syntax at all.
        syntax = CONFIG_SYNTAX | OPERATORS | set(" \t*?[]~")
    else:
        syntax = SYNTAX_BY_FILE.get(name, CONFIG_SYNTAX)
    problems = []
    for number, (h, b) in enumerate(zip(hostile, benign, strict=True), 1):
        if h == b:
            continue
        if _swap(h, mapping) == b:
            bad = [v for v in mapping if v in h and syntax & set(v)]
            if bad:
                problems.append(f"{path}:{number}: unquoted syntax from {bad!r}:\n  + {h}")
        elif _shell_shape(h, b):
            problems.append(f"{path}:{number}: {_shell_shape(h, b)}:\n  - {b}\n  + {h}")
    return problems


def harm(hostile_plan: str, benign_plan: str, cases: list[Case]) -> list[str]:
    """Every command or file where the hostile plan does more than the benign one."""
    mapping = {}
    for case in cases:
        if isinstance(case.value, (str, int)) and not isinstance(case.value, bool):
            mapping[str(case.value)] = str(case.benign)
    hostile, benign = _records(hostile_plan), _records(benign_plan)
    if len(hostile) != len(benign):
        return [f"{len(hostile)} commands and files instead of {len(benign)}"]
    problems = []
    for (h_head, h_lines), (b_head, b_lines) in zip(hostile, benign, strict=True):
        if h_head.startswith("> "):
            problems += _file_harm(b_head[2:], h_lines, b_lines, mapping)
            continue
        h_text, b_text = "\n".join([h_head, *h_lines]), "\n".join([b_head, *b_lines])
        if h_text != b_text:
            why = _shell_shape(h_text[2:], b_text[2:])
            if why:
                problems.append(f"{why}:\n  - {b_text[:300]}\n  + {h_text[:300]}")
    return problems


def _prove(group: list[Case]) -> list[str]:
    runs = [capture(*_merge(group, benign)) for benign in (False, True)]
    failed = [r.stderr[-2000:] for r in runs if r.returncode != 0]
    if failed:
        return ["capture failed: " + failed[0]]
    return harm(runs[0].stdout, runs[1].stdout, group)


@cache
def proofs() -> dict[str, list[str]]:
    """Case label -> what harm its capture showed ([] = proven harmless). Cases are
    captured together, a few captures in all; a group that shows harm is captured again
    one case at a time, so that each problem is its own case's."""
    make_local_repository()
    results = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        groups = rounds(accepted())
        for group, problems in zip(groups, pool.map(_prove, groups), strict=True):
            if problems and len(group) > 1:
                alone = pool.map(_prove, [[c] for c in group])
                for case, problems_alone in zip(group, alone, strict=True):
                    results[case.label()] = problems_alone
            else:
                results.update((case.label(), problems) for case in group)
    return results


def tally() -> dict[str, int]:
    counts = Counter("rejected" if verdicts()[c.label()] else
                     "proven harmless" if not proofs()[c.label()] else "HARMFUL"
                     for c in CORPUS)
    return {"tried": len(CORPUS), **counts}


# --- the tests ---------------------------------------------------------------------------------


def test_the_corpus_covers_every_kind_of_key():
    assert len(CORPUS) >= 150
    assert KINDS <= {case.kind for case in CORPUS}
    assert len({case.label() for case in CORPUS}) == len(CORPUS), "a case is listed twice"


@pytest.mark.parametrize("case", CORPUS, ids=[c.label()[:80] for c in CORPUS])
def test_refused_naming_the_key_or_proven_harmless(case):
    problems = verdicts()[case.label()]
    if problems:
        # Named first, or as the key a clash is with ("...: 9100 is already used by api_port").
        assert any(line.startswith(case.key) or line.endswith(f"used by {case.key}")
                   for line in problems), problems
        return
    harmful = proofs()[case.label()]
    assert not harmful, "\n".join(harmful[:10])


def test_the_tally_has_both_outcomes():
    counts = tally()
    assert counts.get("HARMFUL", 0) == 0, counts
    assert counts["rejected"] > 100 and counts["proven harmless"] > 20, counts


def test_the_proof_detects_an_injection():
    """The harness itself: a raw splice into a command, or a new line, is caught."""
    benign = "$ chown orchestra /srv/benign\n> /etc/x.conf\nserver_name a;\n<\n$ true"
    assert harm(benign, benign, []) == []
    case = Case("path", "install_root", "/srv/x;touch /tmp/pwn", "/srv/benign")
    spliced = benign.replace("/srv/benign", case.value)
    assert harm(spliced, benign, [case])
    quoted = benign.replace("/srv/benign", shlex.quote(case.value))
    assert harm(quoted, benign, [case]) == []
    directive = Case("name", "nginx_server_name", "b; include /etc/passwd", "a")
    assert harm(benign.replace("server_name a;", "server_name b; include /etc/passwd;"),
                benign, [directive])
    assert harm(benign.replace("server_name a;", "server_name a;\ninclude x;"), benign, [])


# The real CLI, as an operator runs it: exit 2, the key named, nothing else done.
CLI_CASES = [
    ("service_user=root", "service_user"),
    ("install_root=/opt", "install_root"),
    ('base_packages=["-oAPT::Update::Pre-Invoke::=id"]', "base_packages[0]"),
    ("weaviate_url=http://example.com/w.tgz", "weaviate_url"),
    ("nginx_server_name=x; include /etc/passwd", "nginx_server_name"),
    ("backup_on_calendar=daily\nExecStart=/bin/sh", "backup_on_calendar"),
    ("api_port=80", "api_port"),
    ("app_source=--upload-pack=touch /tmp/pwn", "app_source"),
]


@pytest.mark.parametrize(("pair", "key"), CLI_CASES, ids=[k for _, k in CLI_CASES])
def test_the_cli_refuses_with_exit_2_naming_the_key(pair, key, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_SECRET_")},
           "PYTHONPATH": str(ROOT), "ORCHESTRA_SECRETS_DIR": str(tmp_path)}
    for spec in secrets_module.SPECS:
        if spec.required:
            env[secrets_module.env_var(spec.name)] = f"valid-{spec.name}-0123456789"
    run = subprocess.run([sys.executable, "-m", "orchestra_infra", "check", "prod",
                          "--data", "weaviate_sha256=" + "ab" * 32, "--data", pair],
                         capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert any(line.startswith(key + ":") for line in run.stderr.splitlines()), run.stderr


def test_a_secret_is_refused_through_the_cli_without_showing_it(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_SECRET_")},
           "PYTHONPATH": str(ROOT), "ORCHESTRA_SECRETS_DIR": str(tmp_path)}
    for spec in secrets_module.SPECS:
        if spec.required:
            env[secrets_module.env_var(spec.name)] = f"valid-{spec.name}-0123456789"
    env["ORCHESTRA_SECRET_MONIT_PASSWORD"] = "A1b2C3d4E5f6G7h8\"; id; \""
    run = subprocess.run([sys.executable, "-m", "orchestra_infra", "check", "prod",
                          "--data", "weaviate_sha256=" + "ab" * 32],
                         capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert run.returncode == 2
    assert run.stderr.startswith("secrets.monit_password: has a character outside its set")
    assert "A1b2C3d4" not in run.stderr


# --- env files are read, never sourced ---------------------------------------------------------

HOSTILE_ENV = ("# comment\n"
               "SECRET=abc$(touch {marker})def\n"
               "TICKS=`touch {marker}`\n"
               "QUOTED='kept' \"as is\" ; touch {marker}\n"
               "EMPTY=\n"
               "EQUALS=a=b=c\n")


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_the_launcher_keeps_every_env_value_literal(shell, tmp_path):
    from operations import render

    launcher = tmp_path / "orchestra-run"
    launcher.write_text(render.render("app/opt/orchestra/bin/orchestra-run.j2", {}))
    marker = tmp_path / "pwned"
    env_file = tmp_path / "api.env"
    env_file.write_text(HOSTILE_ENV.format(marker=marker))
    release = tmp_path / "releases" / "abc123"
    release.mkdir(parents=True)
    run = subprocess.run(
        [shell, str(launcher), str(env_file), sys.executable, "-c",
         "import json, os; print(json.dumps({k: os.environ.get(k) for k in "
         "('SECRET', 'TICKS', 'QUOTED', 'EMPTY', 'EQUALS', 'ORCHESTRA_RELEASE')}))"],
        capture_output=True, text=True, timeout=30, cwd=release, env={"PATH": os.environ["PATH"]})
    assert run.returncode == 0, run.stderr
    assert not marker.exists(), "a value of the env file was run by a shell"
    assert json.loads(run.stdout) == {
        "SECRET": f"abc$(touch {marker})def", "TICKS": f"`touch {marker}`",
        "QUOTED": f"'kept' \"as is\" ; touch {marker}", "EMPTY": "", "EQUALS": "a=b=c",
        "ORCHESTRA_RELEASE": "abc123"}


def test_the_launcher_refuses_a_line_that_is_not_key_value(tmp_path):
    from operations import render

    launcher = tmp_path / "orchestra-run"
    launcher.write_text(render.render("app/opt/orchestra/bin/orchestra-run.j2", {}))
    marker = tmp_path / "pwned"
    env_file = tmp_path / "api.env"
    env_file.write_text(f"OK=1\ntouch {marker}\n$(touch {marker})=x\n")
    run = subprocess.run(["sh", str(launcher), str(env_file), "true"], capture_output=True,
                         text=True, timeout=30, cwd=tmp_path)
    assert run.returncode != 0
    assert run.stderr == f"{env_file}:2: not a KEY=VALUE line\n"
    assert not marker.exists()


# --- the last line of defence, and the host's own records --------------------------------------


def test_rendering_refuses_a_control_character_naming_the_template():
    from operations import render

    with pytest.raises(render.HostileValue, match=r"templates/redis/etc/redis/redis.conf.j2: .*"
                                                  r"control character '\\n'"):
        config = type("C", (), {"redis_maxmemory": "1M", "redis_maxmemory_policy":
                                "noeviction\nrename-command CONFIG \"\"", "redis_port": 6379})
        render.render("redis/etc/redis/redis.conf.j2", {"config": config, "bind": ["127.0.0.1"],
                                                        "version": (7, 0)})


def test_a_bad_ports_record_stops_the_deploy_before_any_change():
    bad = '{"mcp_servers.task": "8100; touch /tmp/pwn"}'
    run = capture({}, {}, responses=[[r"^cat /var/lib/orchestra-infra/ports\.json", bad]])
    assert run.returncode != 0
    assert ("/var/lib/orchestra-infra/ports.json: mcp_servers.task: '8100; touch /tmp/pwn' is "
            "not a port number") in run.stderr
    assert not re.search(r"^> ", run.stdout, re.M), "a file was uploaded"


if __name__ == "__main__":
    counts = tally()
    harmful = [c.label() for c in CORPUS if not verdicts()[c.label()] and proofs()[c.label()]]
    print(" / ".join(f"{key} {value}" for key, value in counts.items()))
    for label in harmful:
        print("HARMFUL", label, proofs()[label][:3])
