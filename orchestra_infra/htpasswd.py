"""bcrypt lines for nginx's ``auth_basic_user_file``, computed on the control machine.

The hosts only ever receive the hash. Its salt is derived from the password (an HMAC), so
the same secret always gives the same line and a converged host's file never changes;
rotating the secret changes it. nginx checks a ``$2b$`` hash with the system's crypt(3):
libxcrypt on Ubuntu 22.04 and Debian 12, which knows bcrypt.

nginx verifies the hash on every request, in the worker that serves it: the cost is kept
low (a generated secret has 256 bits, no brute force is in reach at any cost) and is a
setting (``edge_auth_bcrypt_cost``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import bcrypt

MAX_BYTES = 72  # bcrypt reads no further; the bcrypt module refuses longer passwords
_STANDARD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = str.maketrans(_STANDARD, _BCRYPT)


def _salt(password: str, user: str, cost: int) -> bytes:
    raw = hmac.new(password.encode(), b"orchestra-infra edge htpasswd " + user.encode(),
                   hashlib.sha256).digest()[:16]
    encoded = base64.b64encode(raw).decode().rstrip("=").translate(_TO_BCRYPT)
    return f"$2b${cost:02d}${encoded}".encode()


def bcrypt_hash(password: str, user: str, cost: int) -> str:
    """``$2b$<cost>$<salt><hash>``: the same for the same password, user and cost."""
    if len(password.encode()) > MAX_BYTES:
        raise ValueError(f"a bcrypt password has at most {MAX_BYTES} bytes")
    return bcrypt.hashpw(password.encode(), _salt(password, user, cost)).decode()


def matches(password: str, stored: str) -> bool:
    """Whether a ``$2b$`` hash was made from this password."""
    try:
        return bcrypt.checkpw(password.encode(), stored.encode())
    except ValueError:
        return False
