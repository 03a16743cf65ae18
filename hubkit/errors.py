"""The exception hierarchy: one root, one subclass per layer.

Messages are full sentences that quote the offending name with ``!r`` and list the valid
choices sorted, so a user can fix the call without reading hubkit's source.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DownloadError",
    "FeedError",
    "FormatError",
    "GraphError",
    "HubkitError",
    "IntegrityError",
    "MissingAttachmentError",
    "OpError",
    "RegistryError",
    "ResolveError",
    "SignatureError",
    "SignatureInputError",
]


class HubkitError(Exception):
    """Root of every error hubkit raises for bad input or bad data."""


class GraphError(HubkitError, ValueError):
    """A graph was built wrongly: shape or dtype mismatch, bad name, unknown tensor."""


class OpError(HubkitError, RuntimeError):
    """An op failed while running (e.g. an index out of range in a gather)."""


class FeedError(HubkitError, ValueError):
    """A value fed to a placeholder or a session has the wrong dtype or shape, or is missing."""


class SignatureError(HubkitError, ValueError):
    """A module signature was defined or called wrongly."""


class SignatureInputError(SignatureError, TypeError):
    """A call's inputs do not fit the signature: missing, extra, or of the wrong kind.

    Also a ``TypeError`` (and, as every SignatureError, a ``ValueError``), as TensorFlow Hub raises,
    so TF1 code's ``except TypeError`` clauses keep working.
    """


class MissingAttachmentError(SignatureError, KeyError):
    """A required attached message is absent (also a ``KeyError``, as in TensorFlow Hub)."""

    def __str__(self) -> str:  # KeyError would quote the whole sentence
        return str(self.args[0]) if self.args else ""


class FormatError(HubkitError):
    """A module directory on disk is missing, corrupt or of an unsupported format."""


class CheckpointError(HubkitError):
    """A checkpoint could not be written, read or matched to the objects restoring it."""


class ResolveError(HubkitError):
    """A handle could not be turned into a local module directory."""


class DownloadError(ResolveError):
    """A download failed: HTTP error, timeout, or a response that is not a hubkit module."""


class IntegrityError(DownloadError):
    """Downloaded bytes do not match the expected sha256 or size."""


class RegistryError(HubkitError):
    """A registry root is malformed, or a publish would overwrite an existing version."""
