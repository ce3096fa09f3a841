"""What ``orchestra-infra --help`` tells a new user: the environments, the exit codes.

``finish(main)`` walks the finished command tree once: every ``ENV`` argument (and the
``lambda`` commands' ``--env``) takes the environments that exist (``inventories/ENV.py``
with ``group_data/ENV.py``), listed in the usage line and completed by the shell; every
command's help ends with its exit codes, from ``EXIT_CODES`` (README.md's table is checked
against it by tests/unit/test_cli_docs.py).
"""

from __future__ import annotations

import click

from . import config as config_module

# Every command's exit statuses but 2, which is the same everywhere: a usage error (an unknown
# command, option or environment). Leaves of the tree, by their path below `orchestra-infra`.
EXIT_CODES = {
    "check": "0 valid; 2 a problem in the data or the secrets (one line each, naming the key)",
    "secrets init": "0 written (or nothing new); 1 the file cannot be read or written, or a "
                    "name to rotate is not a generated secret",
    "secrets list": "0 listed (missing secrets show as unset); 1 the file cannot be read",
    "status": "0 every service healthy; 1 something unhealthy or unreachable; 2 the data is "
              "invalid",
    "rollback": "pyinfra's: 0 done, 1 it failed (the live release stays)",
    "backup": "pyinfra's: 0 every data host backed up, 1 a backup failed or was refused",
    "restore": "pyinfra's: 0 restored and healthy, 1 it failed or was refused (or the "
               "question was answered no)",
    "reprovision": "0 the new instance serves ENV and is healthy; 1 a stage failed (it is "
                   "named) or status found a problem; 2 the data is invalid",
    "drift": "0 nothing would change; 1 something would (listed); 2 the data is invalid or "
             "a host could not be previewed",
    "history": "0 shown; 1 a host could not be read; 2 the data is invalid",
    "bench": "0 measured; 1 a host could not be booted or provisioned",
    "chaos": "0 every target met (99.9 % of the requests that did not need what was down, no "
             "acknowledged write lost, every fault recovered); 1 one missed, or the soak "
             "could not run",
    "sandbox up": "0 the hosts answer SSH; 1 a host could not be built or booted",
    "sandbox status": "0",
    "sandbox ssh": "ssh's: the remote command's status, 255 SSH failed; 1 no such host",
    "sandbox reboot": "0 back and answering SSH; 1 it did not come back",
    "sandbox down": "0 gone; 1 something could not be removed",
    "lambda types": "0; 1 the API refused or could not be reached",
    "lambda instances": "0; 1 the API refused or could not be reached",
    "lambda launch": "0 launched (and active, with --wait); 1 the API refused (no capacity, "
                     "bad key, rate limit) or the wait timed out",
    "lambda wait": "0 active and recorded; 1 timed out or the API refused",
    "lambda terminate": "0 terminated; 1 refused (a hosts file lists it) or the API refused",
    "lambda open-web-ports": "0 open; 1 the API refused",
    "lambda open-mesh-port": "0 open between the environment's instances; 1 the API refused",
}
USAGE_ERROR = "2 a usage error: an unknown command, option or environment"


class Environment(click.ParamType):
    """An environment's name; the choices are read when asked, from the project root."""

    name = "environment"

    def choices(self) -> list[str]:
        return config_module.environments()

    def get_metavar(self, param, ctx=None):
        return "{" + "|".join(self.choices()) + "}"

    def convert(self, value, param, ctx):
        known = self.choices()
        if value not in known:
            # Same words as `check` and pyinfra_run have always used.
            raise click.UsageError(f"unknown environment {value!r} (known: {', '.join(known)})",
                                   ctx)
        return value

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(c) for c in self.choices() if c.startswith(incomplete)]


ENVIRONMENT = Environment()


class Main(click.Group):
    """The top command: its epilog names the environments there are when help is shown."""

    def format_epilog(self, ctx, formatter):
        if self.epilog:
            known = ", ".join(ENVIRONMENT.choices()) or "none found (run it from the checkout)"
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(self.epilog.replace("{environments}", known))


def leaves(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every command that is not a group, by its path (``"secrets list"``)."""
    found = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found.update(leaves(command, f"{path} "))
        else:
            found[path] = command
    return found


def finish(main: click.Group) -> None:
    """Give every ENV its choices and every command its exit codes (see the docstring)."""
    for path, command in leaves(main).items():
        for param in command.params:
            if param.name == "env" and param.type in (click.STRING, ENVIRONMENT):
                param.type = ENVIRONMENT
        codes = EXIT_CODES.get(path)
        if codes and "Exit status:" not in (command.epilog or ""):
            command.epilog = ((command.epilog + "\n\n") if command.epilog else "") + \
                f"Exit status: {codes}; {USAGE_ERROR}."
