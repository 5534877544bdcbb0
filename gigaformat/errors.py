"""The error family every gigatile package derives from.

``GigatileError`` is an expected failure with a message a person can act on; each package has its own
subclasses (``TilerError``, ``BoxlinkError``, ``ProxyError``, ``BootstrapError``), and every CLI prints one
without a traceback (``gigaformat.commandline``). ``FormatError`` and its subclasses are this package's:
a name, document or record that does not follow the format.
"""

from __future__ import annotations


class GigatileError(Exception):
    """An expected failure: bad input, a missing file, an unreachable bucket. The message says what to do."""


class FormatError(GigatileError):
    """Something does not follow a gigatile format."""


class InvalidName(FormatError):
    """A dataset name or item id outside its alphabet or length."""


class MalformedDocument(FormatError):
    """A document (manifest, state, changes, record, marker) that cannot be read as its format."""


class UnsupportedFormat(MalformedDocument):
    """A document written in a format version this code does not read (a newer gigatile wrote it)."""


class StorageError(GigatileError):
    """S3 could not be read or written; the message names the cause (credentials, network, bucket, access)."""


class NoCredentials(StorageError):
    """No AWS credentials were found in the environment, the profile or the instance role."""


class NoSuchBucket(StorageError):
    """The bucket does not exist (or the endpoint is not the one it lives on)."""


class AccessDenied(StorageError):
    """The credentials were refused for this bucket or key."""


class Unreachable(StorageError):
    """The S3 endpoint did not answer (network, DNS, a stopped local server)."""


class Mismatch(StorageError):
    """An object is not what the manifest says (size or sha256)."""
