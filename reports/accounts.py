"""Local accounts for the web page: a username from the staff directory and a slow, salted password hash.

Hashes are scrypt (Python's hashlib, OpenSSL underneath) with n=2^15, r=8, p=1: about 32 MB and a tenth
of a second a guess on this machine, and a 16-byte random salt per account. The file is JSON, written
with mode 0600 through a temporary file and a rename, and holds nothing but usernames and hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

_N, _R, _P = 1 << 15, 8, 1
MIN_LENGTH = 12


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64 parts) for `password`, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 << 20, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=64 << 20, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


_DUMMY = hash_password("a password no account has")  # checked when the user is unknown: the same time taken


class Accounts:
    """The accounts file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        return {k: str(v) for k, v in json.loads(self.path.read_text()).items()}

    def set(self, username: str, password: str) -> None:
        """Create or change an account's password (at least MIN_LENGTH characters)."""
        if len(password) < MIN_LENGTH:
            raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
        accounts = self._read()
        accounts[username] = hash_password(password)
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(accounts, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def verify(self, username: str, password: str) -> bool:
        """Whether the account exists and the password is its own (same work either way)."""
        stored = self._read().get(username)
        ok = check_password(password, stored or _DUMMY)
        return ok and stored is not None
