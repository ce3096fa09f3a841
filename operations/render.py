"""Render configuration files: atomically, validated before they count, secrets masked.

pyinfra's ``files.template`` prints secret values in ``--diff`` and, with sudo, lets a
new file exist for a moment with default permissions. This operation renders the
template twice, once for real and once with every ``secret(name)`` masked, shows
only the masked diff, and keeps a masked copy on the host so the next diff has a
secret-free "before". New content lands in a sibling file created with its final
owner and mode, optionally validated in place (``sshd -t``, ``nginx -t``), and is
rolled back when validation fails.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from io import StringIO
from pathlib import Path

from jinja2 import DictLoader, Environment, StrictUndefined
from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Home
from pyinfra.operations.util.files import generate_color_diff

from operations import snapshot
from orchestra_infra import htpasswd, mesh
from orchestra_infra import secrets as secrets_module
from orchestra_infra.paths import project_root
from orchestra_infra.schema import control_character, parse_size

# Beside the package in a checkout; an installed tool (pipx) reads the project's.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
if not TEMPLATES.is_dir():
    TEMPLATES = project_root() / "templates"


def _read_templates(root: Path) -> dict[str, str]:
    # Read once, up front: templates are small, and a run then renders from one
    # consistent snapshot even if files change while it plans.
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.j2")}


class HostileValue(OperationError):
    """A value with a control character reached a template."""


def _refuse_control_characters(value):
    # Every {{ expression }} passes here: a newline or escape in a value would start a new
    # directive in a line-based config file. The schema and the secrets refuse them first;
    # this keeps it so for any value that reaches a template some other way. Multi-line
    # values (private keys) are rendered with the `multiline` filter, which says so.
    if isinstance(value, str) and not isinstance(value, _Multiline):
        char = control_character(value)
        if char:
            raise HostileValue(f"a value rendered into a template holds the control character "
                               f"{char}; refused (no value may span lines)")
    return value


class _Multiline(str):
    """A value that may hold newlines (a PEM key): marked by the ``multiline`` filter."""


_jinja = Environment(
    loader=DictLoader(_read_templates(TEMPLATES)),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_refuse_control_characters,
)
_jinja.filters["multiline"] = _Multiline

_jinja.filters["bytes"] = parse_size
_jinja.filters["quote"] = shlex.quote  # one shell word

_active: secrets_module.Secrets | None = None
# host name -> its state_root. Per host: pyinfra runs an operation's body again when it
# executes, after deploy.py has planned every host, so one module-wide value would be the
# last host's.
_state_roots: dict[str, str] = {}


def use_secrets(values: secrets_module.Secrets) -> None:
    """Make the environment's secrets available to ``secret(name)`` in templates."""
    global _active
    _active = values


def use_state_root(path: str) -> None:
    """Keep the current host's own files (masked copies, private SQL) below ``path``, its
    ``state_root``."""
    _state_roots[host.name] = path


def state_dir(name: str) -> str:
    """``<state_root>/<name>`` of the current host (see ``use_state_root``)."""
    if host.name not in _state_roots:
        raise OperationError(f"{host.name}: no state_root set (render.use_state_root)")
    return posixpath.join(_state_roots[host.name], name)


def secret_value(name: str) -> str:
    """A secret's value, for operations that never put it in a command."""
    if _active is None or name not in _active:
        raise OperationError(f"template asks for secret {name!r}, which is not loaded")
    return _active[name]


def loaded_secrets() -> set[str]:
    """Names of the secrets this run has (optional ones may be missing)."""
    return set(_active or ())


def _masked_secret(name: str) -> str:
    return f"{secrets_module.MASK}({name})"


def _real_sha256(name: str) -> str:
    return hashlib.sha256(secret_value(name).encode()).hexdigest()


def _masked_sha256(name: str) -> str:
    return f"{secrets_module.MASK}(sha256 of {name})"


def _real_bcrypt(name: str, user: str, cost: int) -> str:
    return htpasswd.bcrypt_hash(secret_value(name), user, cost)


def _masked_bcrypt(name: str, user: str, cost: int) -> str:
    return f"{secrets_module.MASK}(bcrypt of {name})"


def _real_wireguard_key(seed: str) -> str:
    return mesh.private_key(secret_value(seed), host.name)


def _masked_wireguard_key(seed: str) -> str:
    return f"{secrets_module.MASK}(WireGuard key from {seed})"


def render(src: str, context: dict, masked: bool = False) -> str:
    """Render ``templates/<src>``; ``secret(name)``, ``secret_sha256(name)``,
    ``secret_bcrypt(name, user, cost)`` and ``wireguard_key(seed)`` (this host's private key,
    derived from the secret seed) are real values, or masks when ``masked``."""
    try:
        return _jinja.get_template(src).render(
            **context,
            secret=_masked_secret if masked else secret_value,
            secret_sha256=_masked_sha256 if masked else _real_sha256,
            secret_bcrypt=_masked_bcrypt if masked else _real_bcrypt,
            wireguard_key=_masked_wireguard_key if masked else _real_wireguard_key,
        )
    except HostileValue as e:
        raise HostileValue(f"templates/{src}: {e}") from None


def script(src: str, **context) -> str:
    """Render the shell program ``templates/<src>`` and return its text, to be run (``sh -c``,
    ``sh -s``) rather than installed. Programs live as files so that shellcheck reads them
    (tests/unit/test_shell_scripts.py); every value reaches them through ``quote``. The
    text is the template's, final newline included: one that a command never had ends in
    a Jinja comment, which takes it away. No ``secret()`` here: a command line is no place
    for one."""
    try:
        return _jinja.get_template(src).render(**context)
    except HostileValue as e:
        raise HostileValue(f"templates/{src}: {e}") from None


def masked_copy_path(dest: str) -> str:
    """Where the current host keeps the masked copy of secret-bearing ``dest``."""
    return posixpath.join(state_dir("masked"), dest.lstrip("/").replace("/", "%"))


_diffs_shown: set[tuple[str, str]] = set()


def _show_diff(dest: str, existed: bool, current: list[str] | None, desired: str) -> None:
    # `op.will_change` runs this generator again: print each file's diff once.
    if (host.name, dest) in _diffs_shown:
        return
    _diffs_shown.add((host.name, dest))
    logger.info(f"{host.print_prefix}Will {'modify' if existed else 'create'} {dest}")
    if existed and current is None:
        logger.info("  (previous contents not recorded: secret-bearing file)")
    current_lines = [line + "\n" for line in current or []]
    for line in generate_color_diff(current_lines, desired.splitlines(keepends=True)):
        logger.info("  %s", line)
    logger.info("")


def private_temp_dir() -> str:
    # Uploads go to the SSH user's own 0700 directory first: a default /tmp upload is
    # world-readable until sudo copies it into place (pyinfra issue #691).
    home = host.get_fact(Home, _sudo=False)
    return f"{home}/.cache/orchestra-infra"


def upload(local: str, remote: str):
    """Commands that copy the local file to ``remote`` (as root), by way of the SSH user's
    own 0700 directory: pyinfra's default temporary directory is sudo's ``$TMPDIR``, which
    pam_tmpdir makes root's own (/tmp/user/0), where SFTP cannot write."""
    temp_dir = private_temp_dir()
    yield StringCommand("mkdir", "-p", "-m", "700", temp_dir, _sudo=False)
    yield FileUploadCommand(local, remote, remote_temp_filename=host.get_temp_filename(
        remote, temp_directory=temp_dir))


def place(content: str, dest: str, user: str, group: str, mode: str, existed: bool = False,
           validate: str | None = None):
    """Upload next to dest with the final owner and mode, then rename over dest."""
    temp_dir = private_temp_dir()
    new = f"{dest}.orchestra-new"
    yield StringCommand("mkdir", "-p", "-m", "700", temp_dir, _sudo=False)
    if not existed:
        yield StringCommand("mkdir", "-p", posixpath.dirname(dest))
    # `cp` over an existing file keeps that file's owner and mode: create it private first.
    yield StringCommand("install", "-m", mode, "-o", user, "-g", group, "/dev/null", new)
    yield FileUploadCommand(
        StringIO(content),
        new,
        remote_temp_filename=host.get_temp_filename(new, temp_directory=temp_dir),
    )
    yield _swap_in(new, dest, existed, validate)


def _swap_in(new: str, dest: str, existed: bool, validate: str | None) -> StringCommand:
    if not validate:
        return StringCommand("mv", "-f", QuoteString(new), QuoteString(dest))
    old = f"{dest}.orchestra-old"
    restore = f"mv -f {old} {dest}" if existed else f"rm -f {dest}"
    script = (
        f"{'ln -f ' + dest + ' ' + old + ' && ' if existed else ''}mv -f {new} {dest} && "
        f"if {validate}; then rm -f {old}; "
        f"else {restore}; echo 'validation failed ({validate}): {dest} restored' >&2; exit 1; fi"
    )
    return StringCommand("sh", "-c", QuoteString(script))


@snapshot.registers("files", "dest")
@operation()
def template(
    src: str | None,
    dest: str,
    context: dict | None = None,
    user: str = "root",
    group: str = "root",
    mode: str = "644",
    secret: bool = False,
    validate: str | None = None,
    text: str | None = None,
):
    """
    Render a Jinja2 template to a file, atomically, with masked secrets in diffs.

    + src: template path below ``templates/`` (``None`` with ``text``)
    + dest: remote file path
    + context: template variables (never secret values: use ``secret(name)`` instead)
    + user, group, mode: owner and permissions, applied before any content is written
    + secret: the file holds secrets; its previous contents are never read back
    + validate: shell command that must succeed with the new file in place, else it is rolled back
    + text: literal content instead of a template (CA certificates, one-line files)

    **Example:**

    .. code:: python

        render.template(
            name="Render sshd drop-in",
            src="security/etc/ssh/sshd_config.d/00-orchestra.conf.j2",
            dest="/etc/ssh/sshd_config.d/00-orchestra.conf",
            context={"config": config},
            validate="sshd -t",
        )
    """
    context = context or {}
    desired = text if src is None else render(src, context)
    digest = hashlib.sha256(desired.encode()).hexdigest()
    current = snapshot.lookup("files", dest)

    if current and current["sha256"] == digest:
        if current["user"] != user or current["group"] != group:
            yield StringCommand("chown", QuoteString(f"{user}:{group}"), QuoteString(dest))
        if current["mode"] != int(mode):
            yield StringCommand("chmod", mode, dest)
        host.noop(f"file {dest} is already up to date")
        return

    existed = bool(current)
    if state.config.DIFF:
        # A secret-bearing file is never read back: its "before" is the masked copy.
        before_path = masked_copy_path(dest) if secret else dest
        before = host.get_fact(FileContents, path=before_path) if existed else None
        shown = render(src, context, masked=True) if secret and src else desired
        _show_diff(dest, existed, before, shown)

    yield from place(desired, dest, user, group, mode, existed, validate)
    if secret:
        yield StringCommand("install", "-d", "-m", "700", state_dir("masked"))
        masked_copy = masked_copy_path(dest)
        yield from place(render(src, context, masked=True), masked_copy, "root", "root", "600")
