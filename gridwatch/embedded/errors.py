"""Errors raised while preparing or running an embedded service.

One base class so a caller (the CLI, a test fixture) can report "the embedded services
could not start" in one place, and a few subclasses for the failures a person fixes
differently: install a package, free a port, fix a permission.
"""

from __future__ import annotations


class EmbeddedServiceError(RuntimeError):
    """Base of every error from `gridwatch.embedded`."""


class MissingBinary(EmbeddedServiceError):
    """A program the service needs is not installed.

    The message names the Debian package to install, because "initdb: not found" alone
    does not tell a person that they need `postgresql`.
    """

    def __init__(self, name: str, package: str | None, searched: list[str]) -> None:
        self.name = name
        self.package = package
        self.searched = searched
        where = ", ".join(searched) if searched else "nowhere"
        if package:
            hint = f"install the Debian package: apt-get install {package}"
        else:
            hint = "no Debian package is known to provide it"
        super().__init__(f"{name} not found (searched {where}); {hint}")


class PrivilegeError(EmbeddedServiceError):
    """A service user is missing or cannot reach a file or directory it needs."""


class ServiceStartError(EmbeddedServiceError):
    """A service did not come up; the message carries the tail of its log."""


class PortInUse(ServiceStartError):
    """The TCP port asked for is already bound by another process."""
