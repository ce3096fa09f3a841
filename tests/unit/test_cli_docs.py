"""What README.md and docs/runbook.md show a user to type exists, and what a user needs is shown.

Every ``orchestra-infra ...`` line in a code block and every inline ``orchestra-infra ...``
span is resolved against click's command tree: each subcommand must exist and each option
must belong to the command it is given to. The other way round, every leaf command and every
option of the CLI must appear somewhere in the two documents, and README.md's exit-code table
must say what each command's ``--help`` says (orchestra_infra/cli_help.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orchestra_infra import cli_help
from orchestra_infra.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/runbook.md")
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "<", "2>&1"}


def _command_lines(text: str) -> list[str]:
    lines = []
    in_block, pending = False, ""
    for raw in text.splitlines():
        if raw.startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            line = re.sub(r"\s+#.*$", "", line)
            if "`orchestra-infra " in line:
                lines += re.findall(r"`(orchestra-infra [^`]+)`", line)
            elif "orchestra-infra " in line and not line.startswith("#"):
                lines.append(line[line.index("orchestra-infra "):])
        else:
            lines += re.findall(r"`(orchestra-infra [^`]+)`", raw)
    return lines


def _documented() -> list[tuple[str, str]]:
    return [(doc, line) for doc in DOCS for line in _command_lines((ROOT / doc).read_text())]


def _option_names(command: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts + param.secondary_opts)
    return names


def _problems(line: str) -> list[str]:
    try:
        words = shlex.split(line.replace("…", ""))
    except ValueError:
        words = line.split()
    return _walk(main, words[1:], "orchestra-infra")


def _walk(command: click.Command, words: list[str], path: str) -> list[str]:
    for i, word in enumerate(words):
        if word in SHELL_STOP or word.startswith("$("):
            return []
        if word.startswith("-") and word != "--":
            option = word.strip("[]").split("=")[0]
            if option not in _option_names(command):
                return [f"{path}: no option {option}"]
        elif word == "--":
            return []
        elif isinstance(command, click.Group) and word.strip("[]") not in ("...", "ENV"):
            problems = []
            for name in word.strip("[]").split("|"):
                if name not in command.commands:
                    problems.append(f"{path}: no command {name!r}")
                else:
                    problems += _walk(command.commands[name], words[i + 1:], f"{path} {name}")
            return problems
    return []


@pytest.mark.parametrize(("doc", "line"), _documented(), ids=lambda v: v[:60])
def test_documented_command_exists(doc, line):
    assert _problems(line) == [], f"{doc}: {line}"


def test_the_walk_finds_what_does_not_exist():
    assert _problems("orchestra-infra restore prod --snapshott x") == [
        "orchestra-infra restore: no option --snapshott"]
    assert _problems("orchestra-infra lambda types|instancez") == [
        "orchestra-infra lambda: no command 'instancez'"]
    assert _problems("orchestra-infra status prod [--json] | jq .") == []


def _all_text() -> str:
    return "\n".join((ROOT / doc).read_text() for doc in DOCS)


def test_every_command_and_option_is_documented():
    text = _all_text()
    documented = " ".join(line for _, line in _documented())
    missing = []
    for path, command in cli_help.leaves(main).items():
        *group, name = path.split()
        # `lambda types|instances|...` names several commands at once
        if not re.search(rf"orchestra-infra {' '.join(group)}\s*\S*\b{re.escape(name)}\b",
                         documented) and f"`{path}`" not in text:
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Option) and not any(o in text for o in param.opts):
                missing.append(f"{path} {'/'.join(param.opts)}")
    assert missing == []


def test_orchestra_environment_variables_are_documented():
    used = set()
    for source in [*ROOT.glob("orchestra_infra/**/*.py"), *ROOT.glob("inventories/*.py"),
                   *ROOT.glob("group_data/*.py"), ROOT / "deploy.py", ROOT / "restore.py"]:
        used.update(re.findall(r"\bORCHESTRA_[A-Z0-9_]*[A-Z0-9]\b", source.read_text()))
    text = _all_text()
    # ORCHESTRA_SECRET_<NAME> and ORCHESTRA_<ENV>_HOSTS are documented by their pattern.
    missing = sorted(v for v in used if v not in text and not v.startswith("ORCHESTRA_SECRET_")
                     and not v.endswith("_HOSTS"))
    assert missing == []


def test_every_command_has_exit_codes_in_help_and_readme():
    readme = (ROOT / "README.md").read_text()
    for path in cli_help.leaves(main):
        assert path in cli_help.EXIT_CODES, path
        result = CliRunner().invoke(main, [*path.split(), "--help"], terminal_width=10_000)
        assert f"Exit status: {cli_help.EXIT_CODES[path]}" in " ".join(result.output.split())
        assert f"| `{path}` | {cli_help.EXIT_CODES[path]} |" in readme, path


def test_version_and_short_help():
    assert CliRunner().invoke(main, ["--version"]).output.startswith("orchestra-infra, version ")
    result = CliRunner().invoke(main, ["-h"])
    assert result.exit_code == 0 and "ENV is one of: prod, sandbox, staging" in result.output
    result = CliRunner().invoke(main, ["status", "-h"])
    assert "{prod|sandbox|staging}" in result.output


def test_shell_completion_offers_environments():
    result = CliRunner().invoke(main, [], prog_name="orchestra-infra", env={
        "_ORCHESTRA_INFRA_COMPLETE": "bash_complete", "COMP_WORDS": "orchestra-infra check s",
        "COMP_CWORD": "2"})
    assert result.output.split() == ["plain,sandbox", "plain,staging"]


def test_unknown_environment_is_a_usage_error_everywhere():
    for path in ("check", "status", "rollback", "backup", "restore", "reprovision",
                 "secrets init", "secrets list"):
        result = CliRunner().invoke(main, [*path.split(), "prdo"])
        assert result.exit_code == 2, path
        assert "unknown environment 'prdo' (known: prod, sandbox, staging)" in result.output
