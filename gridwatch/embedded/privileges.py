"""Run embedded services as an unprivileged user, and give them state they can reach.

Why this exists
---------------
Started as root (our CI, containers, a quick `sudo gridwatch run`), the services must not
run as root: PostgreSQL refuses to (`initdb`/`postgres` exit with an error), and mosquitto
drops to the `mosquitto` user by itself right after reading its config. Whatever runs as
that user must then be able to reach its state: every parent directory must grant it
search (x) permission, and its own directory must be writable.

Where the state goes
--------------------
A service's state normally lives at `<data dir>/<service>` (e.g. `.gridwatch/postgres`),
owned by the service user. But the data dir may sit inside a private tree: with
`/root/project/.gridwatch`, `/root` is 0700 and the `postgres` user cannot get through it.
We do NOT chmod the parents: opening up a person's home directory (or a venv, as some
embedded-postgres packages do) is a silent security change far from where it was asked
for. Instead that service's state is kept in

    /var/lib/gridwatch/<12 hex digits of sha256(resolved data dir)>/<service>

owned by the service user (0700), and a symlink is left at `<data dir>/<service>` pointing
there, so a person looking in the data dir finds the state. The hash directory also holds
a file `origin` naming the data dir it belongs to, so a person looking in /var/lib/gridwatch
can tell which project a directory serves. Deleting the data dir does not delete the
relocated state; remove `/var/lib/gridwatch/<hash>` by hand. Once relocated, a service
keeps using the symlink's target even if the parents later become reachable, so state never
silently splits between two places.

Unix sockets
------------
`sun_path` holds 108 bytes, and PostgreSQL refuses a socket path longer than that; deep
project trees overflow it. A service's socket goes in its state dir when the full socket
path stays under 100 bytes, otherwise in a short private directory
`/tmp/gridwatch-<hash of the state dir>` owned by the service user.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from gridwatch.embedded.errors import PrivilegeError

__all__ = [
    "FALLBACK_ROOT",
    "SOCKET_PATH_LIMIT",
    "ServiceUser",
    "can_read",
    "can_traverse",
    "can_write",
    "chown_to",
    "group_name",
    "lookup_service_user",
    "prepare_state_dir",
    "run_as_prefix",
    "running_as_root",
    "short_hash",
    "socket_dir_for",
]

FALLBACK_ROOT = Path("/var/lib/gridwatch")
#: Socket paths must stay strictly below this many bytes (sun_path is 108 with the NUL).
SOCKET_PATH_LIMIT = 100
_SOCKET_FALLBACK_PARENT = Path("/tmp")

_R, _W, _X = 4, 2, 1


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """The system account a service runs as when we are root."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def running_as_root() -> bool:
    """True when services must be started under another user."""
    return os.geteuid() == 0


def lookup_service_user(name: str, *, package: str) -> ServiceUser:
    """Return the system user `name`; `package` is the Debian package that creates it."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(
            f"system user {name!r} does not exist; it is created by the Debian package "
            f"{package!r} (apt-get install {package})"
        ) from None
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def run_as_prefix(user: ServiceUser) -> list[str]:
    """Return the argv prefix that runs a program as `user` (only meaningful as root).

    `setpriv` is preferred: it only switches ids, while `runuser` also opens a PAM session
    (slower, and it logs). Both come with util-linux, which every Debian has.
    """
    setpriv = shutil.which("setpriv") or _sbin("setpriv")
    if setpriv:
        return [
            setpriv,
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--init-groups",
            "--",
        ]
    runuser = shutil.which("runuser") or _sbin("runuser")
    if runuser:
        return [runuser, "-u", user.name, "--"]
    raise PrivilegeError(
        "neither setpriv nor runuser found; install the Debian package 'util-linux'"
    )


def _sbin(name: str) -> str | None:
    for directory in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _grants(st: os.stat_result, user: ServiceUser, bits: int) -> bool:
    # The kernel uses exactly one class: owner, else group, else other (ACLs are ignored
    # here; Debian does not set them on the paths we use).
    if user.uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == user.uid:
        granted = mode >> 6
    elif st.st_gid in user.groups:
        granted = mode >> 3
    else:
        granted = mode
    return granted & bits == bits


def can_traverse(path: Path, user: ServiceUser) -> bool:
    """True if `user` can search every existing directory from `/` down to `path`.

    Checks the resolved path: symlinks are followed by the kernel, so the real directories
    are the ones whose permissions count. A component that does not exist yet stops the
    walk (whoever creates it decides its mode).
    """
    current = Path("/")
    for part in path.resolve().parts[1:]:
        try:
            st = current.stat()
        except FileNotFoundError:
            return True
        if not _grants(st, user, _X):
            return False
        current = current / part
    try:
        st = current.stat()
    except FileNotFoundError:
        return True
    return not stat.S_ISDIR(st.st_mode) or _grants(st, user, _X)


def can_write(directory: Path, user: ServiceUser) -> bool:
    """True if `user` can reach `directory` and create files in it."""
    if not can_traverse(directory, user):
        return False
    try:
        st = directory.resolve().stat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and _grants(st, user, _W | _X)


def can_read(file: Path, user: ServiceUser) -> bool:
    """True if `user` can reach and read `file`."""
    resolved = file.resolve()
    if not can_traverse(resolved.parent, user):
        return False
    try:
        return _grants(resolved.stat(), user, _R)
    except FileNotFoundError:
        return False


def chown_to(path: Path, user: ServiceUser | None) -> None:
    """Give `path` to `user` (no-op when not root: the service runs as us)."""
    if user is not None:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)


def short_hash(path: Path) -> str:
    """Return 12 hex digits identifying a resolved path (48 bits: no realistic clash)."""
    return hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:12]


def prepare_state_dir(
    state_dir: Path,
    user: ServiceUser | None,
    *,
    fallback_root: Path = FALLBACK_ROOT,
) -> Path:
    """Create the state directory of one service and return the real path to use.

    `state_dir` is `<data dir>/<service>`. `user` is the service user when we are root,
    None otherwise (the service then runs as us and can reach whatever we can). The
    returned path is resolved; it differs from `state_dir` when the state was relocated
    under `fallback_root` (see the module docstring).
    """
    state_dir = state_dir.absolute()
    if user is None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return state_dir.resolve()

    data_dir = state_dir.parent
    data_dir.mkdir(parents=True, exist_ok=True)
    if state_dir.is_symlink():
        target = state_dir.resolve()
        if not target.is_dir():
            raise PrivilegeError(
                f"{state_dir} is a symlink to {target}, which is missing; "
                "remove the symlink to start from empty state"
            )
        _require_owned(target, user)
        return target
    if state_dir.is_dir():
        if not can_traverse(state_dir, user):
            if any(state_dir.iterdir()):
                raise PrivilegeError(
                    f"{state_dir} holds state but user {user.name!r} cannot reach it "
                    f"(a parent directory denies search); move it to a reachable place"
                )
            state_dir.rmdir()
            return _relocate(state_dir, user, fallback_root)
        _require_owned(state_dir, user)
        return state_dir.resolve()
    if can_traverse(data_dir, user):
        state_dir.mkdir(mode=0o700)
        chown_to(state_dir, user)
        return state_dir.resolve()
    return _relocate(state_dir, user, fallback_root)


def _require_owned(directory: Path, user: ServiceUser) -> None:
    st = directory.stat()
    if st.st_uid == user.uid:
        return
    if any(directory.iterdir()):
        raise PrivilegeError(
            f"{directory} is not empty and is owned by uid {st.st_uid}, not by "
            f"{user.name!r} (uid {user.uid}) who runs the service; "
            f"fix with: chown -R {user.name}: {directory}"
        )
    chown_to(directory, user)
    directory.chmod(0o700)


def _relocate(state_dir: Path, user: ServiceUser, fallback_root: Path) -> Path:
    data_dir = state_dir.parent.resolve()
    home = fallback_root / short_hash(data_dir)
    # The hash directory is root's and world-searchable so each service user can reach
    # only its own 0700 subdirectory.
    home.mkdir(mode=0o755, parents=True, exist_ok=True)
    for directory in (fallback_root, home):
        directory.chmod(0o755)
    (home / "origin").write_text(f"{data_dir}\n")
    target = home / state_dir.name
    target.mkdir(mode=0o700, exist_ok=True)
    _require_owned(target, user)
    state_dir.symlink_to(target, target_is_directory=True)
    return target


def socket_dir_for(
    preferred: Path,
    socket_name: str,
    user: ServiceUser | None,
    *,
    fallback_parent: Path = _SOCKET_FALLBACK_PARENT,
) -> Path:
    """Return a directory where `socket_name` fits under `SOCKET_PATH_LIMIT` bytes.

    `preferred` (already created and owned by the service user) when it fits; otherwise
    `/tmp/gridwatch-<hash of preferred>`, 0700 and owned by the service user, so the socket
    stays as private as it would have been in the state dir.
    """
    if len(os.fsencode(preferred / socket_name)) < SOCKET_PATH_LIMIT:
        return preferred
    short = fallback_parent / f"gridwatch-{short_hash(preferred)}"
    owner = user.uid if user is not None else os.geteuid()
    with contextlib.suppress(FileExistsError):
        short.mkdir(mode=0o700)
        chown_to(short, user)
    st = short.lstat()
    # /tmp is shared: refuse a directory (or symlink) someone else planted there.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner:
        raise PrivilegeError(
            f"{short} exists but is not a directory owned by uid {owner}; remove it"
        )
    if len(os.fsencode(short / socket_name)) >= SOCKET_PATH_LIMIT:
        raise PrivilegeError(f"socket path {short / socket_name} is too long")
    return short


def group_name(gid: int) -> str:
    """Return the name of group `gid` (for messages that tell a person what to chown)."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
