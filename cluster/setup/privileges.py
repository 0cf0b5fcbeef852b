"""Who the workers run as: ``--user`` and ``--group``.

The master keeps the identity it was started with (often root): it binds the ports,
holds the pid file's lock, writes the status file where root put it, and never runs
the app's code; every message a worker sends it is validated (:mod:`cluster.protocol.frames`).
Each worker drops to ``--user``/``--group`` right after fork, before it imports the
app, so the app and everything a client can reach run unprivileged (gunicorn's arbiter
and workers split the same way). The master's pre-flight load of the app runs as that
identity too. Names are resolved when the settings are made: a bad name is one line
before anything binds.
"""
from __future__ import annotations

import dataclasses
import grp
import os
import pwd


class IdentityError(ValueError):
    """A user or group that does not exist, or that this process cannot become."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """The user and groups a worker runs as; None keeps the master's own."""

    uid: int | None
    gid: int | None
    groups: tuple[int, ...] | None
    """Supplementary groups (the user's, or just ``gid`` when only a group is given)."""

    @property
    def owner(self) -> tuple[int, int]:
        """(uid, gid) for ``chown``; -1 leaves that part as it is."""
        return (-1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def popen_args(self) -> dict:
        """``subprocess`` arguments that run a child as this identity."""
        args: dict = {}
        if self.uid is not None:
            args["user"] = self.uid
        if self.gid is not None:
            args["group"] = self.gid
        if self.groups is not None:
            args["extra_groups"] = list(self.groups)
        return args

    def become(self) -> None:
        """Switch this process (a new worker) to this identity, for good."""
        if self.groups is not None:
            os.setgroups(list(self.groups))
        if self.gid is not None:
            os.setgid(self.gid)
        if self.uid is not None:
            os.setuid(self.uid)
            if os.geteuid() != self.uid:  # pragma: no cover - setuid cannot half-succeed
                raise IdentityError(f"could not become uid {self.uid}")


def resolve(user: str | None, group: str | None) -> Identity | None:
    """The identity named by ``user``/``group`` (names or numbers); None when neither is given.

    Raises IdentityError for an unknown name, or when this process is not root and the
    identity is not its own.
    """
    if not user and not group:
        return None
    entry = _user(user) if user else None
    gid = _group(group) if group else (entry.pw_gid if entry else None)
    if entry is not None:
        groups = tuple(os.getgrouplist(entry.pw_name, gid if gid is not None else entry.pw_gid))
    else:
        groups = (gid,) if gid is not None else None
    identity = Identity(entry.pw_uid if entry else None, gid, groups)
    if os.geteuid() != 0 and (identity.uid not in (None, os.geteuid())
                              or identity.gid not in (None, os.getegid())):
        raise IdentityError("--user and --group need the master to run as root")
    return identity


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise IdentityError(f"unknown user {name!r}") from None


def _group(name: str) -> int:
    try:
        return grp.getgrgid(int(name)).gr_gid if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        raise IdentityError(f"unknown group {name!r}") from None
