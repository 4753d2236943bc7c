"""Error types shared by every vitbench package.

Every error a user can cause derives from :class:`VitbenchError`; the CLI prints its message on one line and
exits 1. Messages name the file or key at fault and, where there is one, the fix.
"""

from __future__ import annotations


class VitbenchError(Exception):
    """A user-facing error: bad input, unknown name, unsafe or mismatched checkpoint."""


class UnknownNameError(VitbenchError, KeyError):
    """An unknown method, variant or task name (the message carries a did-you-mean hint)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(VitbenchError):
    """A checkpoint that cannot be read, or does not fit the architecture it is loaded into."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that asks for a global outside the allow-list (it would run code on load)."""


class DataError(VitbenchError):
    """A dataset folder, annotation or image that is missing or malformed."""


class RecordError(VitbenchError):
    """A result record that fails validation."""
