"""Typed exceptions of silica. Messages are the CLI's and the server's; ``field`` names the
offending input as they do (``vectors``, ``queries``, ``filter``, ``k``, ``items[2].vector[7]``).

Every class derives from :class:`SilicaError`; input mistakes also derive from
:class:`ValueError`, I/O from :class:`OSError`, device failures from :class:`RuntimeError`,
an unknown item id from :class:`LookupError`, so ``except ValueError`` works as expected.
"""


class SilicaError(Exception):
    """Base class. ``field``: the input at fault (or ``None``)."""

    def __init__(self, message, **attrs):
        super().__init__(message)
        self.message = message
        self.field = attrs.pop("field", None)
        for k, v in attrs.items():
            setattr(self, k, v)


class InvalidParameter(SilicaError, ValueError):
    """A parameter out of range (``k = 0``, ``nprobe > nlist``, unknown metric or device)."""


class DimensionError(SilicaError, ValueError):
    """A vector or array of the wrong shape or dimension."""


class NonFiniteError(SilicaError, ValueError):
    """NaN or +-Inf in vectors or queries; ``row`` and ``col`` name the value."""


class OutOfRangeError(SilicaError, ValueError):
    """A finite value silica cannot store or score (beyond f16 for ``ip`` items, a sum of
    squares beyond f32); ``row`` (and ``col``) name it."""


class AttributesError(SilicaError, ValueError):
    """Malformed attributes: ``row`` is the 0-based item (a missing or duplicate ``id``, a
    non-string value in a list, a non-numeric feature...)."""


class CountMismatchError(SilicaError, ValueError):
    """Two inputs disagree in length (attributes vs vectors, filters vs queries)."""


class FilterError(SilicaError, ValueError):
    """A filter that does not parse or names an unknown field; ``column`` is 1-based."""


class UpdateError(SilicaError, ValueError):
    """An update refused by the server's checks; ``field`` is the server's JSON path
    (``items[0].vector[3]``, ``attributes.colour``), ``code`` its error code."""


class ItemNotFound(UpdateError, LookupError):
    """Delete or patch of an id the index does not hold (the server's 404)."""


class FormatError(SilicaError):
    """A broken or incompatible artifact (bad checksum, truncated file, not silica)."""


class WalCorruptError(FormatError):
    """The write-ahead log beside the artifact is damaged before its last record."""


class SilicaIOError(SilicaError, OSError):
    """An I/O failure on ``path``."""


class BackendError(SilicaError, RuntimeError):
    """A device is unavailable or failed (``backend`` names it)."""


class ServerError(SilicaError):
    """An error answer of ``silica serve``: ``status``, ``code``, ``field`` as in its JSON."""
