"""Errors of the runtime core.

Every error a user can cause is a JetpackError whose message says what is wrong and what to do;
the Ansible glue turns it into fail_json(msg=...), the CLI prints it.
"""
from __future__ import annotations


class JetpackError(Exception):
    """Base class; str(error) is the message shown to the user."""

    def details(self) -> dict:
        """Extra fields for a module failure (command, rc, stderr...)."""
        return {}


class InvalidInput(JetpackError):
    """A bad option, name or manifest field; `field` names it."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class ArchiveError(JetpackError):
    """An ACI archive was refused: malformed or hostile."""


class NotFound(JetpackError):
    pass


class AlreadyExists(JetpackError):
    pass


class InUse(JetpackError):
    """The object is used by others; `users` names them."""

    def __init__(self, message: str, users=()):
        super().__init__(message)
        self.users = list(users)

    def details(self) -> dict:
        return {"users": self.users}


class Busy(JetpackError):
    """A transient "dataset is busy"; worth retrying."""


class CommandError(JetpackError):
    """A command failed; carries what a user needs to see why."""

    def __init__(self, message: str, argv=(), rc=None, stdout="", stderr=""):
        super().__init__(message)
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def details(self) -> dict:
        return {"cmd": self.argv, "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}
