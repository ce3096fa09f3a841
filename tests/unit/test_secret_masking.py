"""A planted canary secret must never reach a --diff preview, a command or an operation name."""

import logging

import pytest
from jinja2 import ChoiceLoader, DictLoader
from pyinfra.api import FileUploadCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from operations import render
from orchestra_infra.secrets import MASK, Secrets

CANARY = "canary-7f3a9c1e5b2d4f60a8e9"
OLD_CANARY = "old-canary-0b1c2d3e4f5a6b7c"
TEMPLATE = "test/app.env.j2"
DEST = "/etc/orchestra/app.env"
# The masked copy: below the host's state_root, named after the file's path.
MASKED_COPY = "/srv/orch-state/masked/etc%orchestra%app.env"


@pytest.fixture
def secret_template(monkeypatch):
    extra = DictLoader({TEMPLATE: (
        "DATABASE_URL=postgresql://app:{{ secret('postgres_app_password') }}@127.0.0.1/app\n"
        "LOG_LEVEL={{ level }}\n"
    )})
    monkeypatch.setattr(render._jinja, "loader", ChoiceLoader([render._jinja.loader, extra]))
    render.use_secrets(Secrets("test", {"postgres_app_password": CANARY}))
    render._diffs_shown.clear()
    yield
    render.use_secrets(None)


def _run(facts, **kwargs):
    state = FakeState()
    state.config.DIFF = True
    host = create_host(state, name="h1", facts=facts)
    with ctx_state.use(state), ctx_host.use(host):
        render.use_state_root("/srv/orch-state")
        return list(render.template._inner(src=TEMPLATE, dest=DEST, **kwargs))


def _text(commands):
    return "\n".join(repr(c) for c in commands)


def test_diff_of_changed_secret_file_shows_masks_only(secret_template, caplog):
    masked_before = [
        f"DATABASE_URL=postgresql://app:{MASK}(postgres_app_password)@127.0.0.1/app",
        "LOG_LEVEL=info",
    ]
    facts = {
        "facts.FileState": {f"path={DEST}": {"user": "root", "group": "orchestra", "mode": 640,
                                               "sha256": "old-" + OLD_CANARY}},
        "files.FileContents": {f"path={MASKED_COPY}": masked_before},
        "server.Home": "/home/ubuntu",
    }
    with caplog.at_level(logging.DEBUG):
        commands = _run(facts, context={"level": "debug"}, secret=True, group="orchestra",
                        mode="640")

    output = caplog.text
    assert "Will modify /etc/orchestra/app.env" in output
    assert "LOG_LEVEL=debug" in output  # the diff itself is shown...
    assert f"{MASK}(postgres_app_password)" in output  # ...with the secret masked
    assert CANARY not in output and OLD_CANARY not in output
    # Commands are printed at -vv: none may carry the value; only the upload does.
    assert CANARY not in _text(commands)
    uploads = [c for c in commands if isinstance(c, FileUploadCommand)]
    contents = [u.src.getvalue() for u in uploads]
    assert CANARY in contents[0]  # the real file, created 0640 before its content lands
    assert CANARY not in contents[1]  # the masked copy kept for the next diff
    assert uploads[1].dest == f"{MASKED_COPY}.orchestra-new"
    assert "install -m 640 -o root -g orchestra /dev/null /etc/orchestra/app.env.orchestra-new" \
        in _text(commands)


def test_first_write_of_secret_file_is_masked(secret_template, caplog):
    facts = {"facts.FileState": {f"path={DEST}": None}, "server.Home": "/home/ubuntu"}
    with caplog.at_level(logging.DEBUG):
        _run(facts, context={"level": "info"}, secret=True)
    assert "Will create /etc/orchestra/app.env" in caplog.text
    assert CANARY not in caplog.text


def test_missing_masked_copy_hides_previous_contents(secret_template, caplog):
    facts = {
        "facts.FileState": {f"path={DEST}": {"user": "root", "group": "root", "mode": 600,
                                             "sha256": "0"}},
        "files.FileContents": {f"path={MASKED_COPY}": None},
        "server.Home": "/home/ubuntu",
    }
    with caplog.at_level(logging.DEBUG):
        _run(facts, context={"level": "info"}, secret=True, mode="600")
    assert "previous contents not recorded" in caplog.text
    assert CANARY not in caplog.text


def test_secrets_repr_and_mask_hide_values():
    values = Secrets("prod", {"a": CANARY, "b": CANARY[:10]})
    assert CANARY not in repr(values)
    assert values.mask(f"x={CANARY} y={CANARY[:10]}") == f"x={MASK} y={MASK}"
