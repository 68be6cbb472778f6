"""PhysioNet credentials, read only inside Python: never from the config or a command line.

Order: the environment variables ``PHYSIONET_USERNAME`` and ``PHYSIONET_PASSWORD``, then the
``~/.netrc`` entry (``machine physionet.org login ... password ...``) of the download host.  The
password is never logged, never written to a file and never part of an error message.
"""

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from instructx2x.core.errors import InputError

ENV_USER = "PHYSIONET_USERNAME"
ENV_PASSWORD = "PHYSIONET_PASSWORD"


class CredentialsError(InputError):
    """No usable credentials were found (the message never contains a password)."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    origin: str = "env"

    def __repr__(self) -> str:  # keep the password out of any repr/log line
        return f"Credentials(username={self.username!r}, origin={self.origin!r})"

    def as_auth(self) -> tuple[str, str]:
        return (self.username, self.password)


def get_credentials(base_url: str, netrc_path: str | Path | None = None, environ=None) -> Credentials:
    """Credentials for ``base_url``'s host: env vars first, then the netrc file."""
    environ = os.environ if environ is None else environ
    user, password = environ.get(ENV_USER), environ.get(ENV_PASSWORD)
    if user and password:
        return Credentials(user, password, "env")
    if user or password:
        missing = ENV_PASSWORD if user else ENV_USER
        raise CredentialsError(f"{missing} is not set (set both {ENV_USER} and {ENV_PASSWORD}, or neither and use ~/.netrc)")
    host = urlparse(base_url).hostname or ""
    path = Path(netrc_path) if netrc_path else Path(environ.get("NETRC", Path.home() / ".netrc"))
    if path.is_file():
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError) as exc:
            raise CredentialsError(f"{path}: cannot be parsed ({type(exc).__name__})") from None
        if entry and entry[0] and entry[2]:
            return Credentials(entry[0], entry[2], f"netrc:{path}")
    raise CredentialsError(
        f"no PhysioNet credentials: set {ENV_USER} and {ENV_PASSWORD} in the environment, "
        f"or add 'machine {host} login <user> password <password>' to {path}"
    )
