"""silica: a GPU-native retrieval engine; the index is a model.

One artifact of tensors, searched as one forward pass:
Bloom filter -> IVF probe -> int8 scan + top-K0 -> rerank -> top-k.

    import numpy as np, silica
    index = silica.Index.build(np.random.rand(1000, 64), [{"id": f"i{i}", "color": "red" if i % 2 else "blue"} for i in range(1000)])
    scores, rows = index.search(np.random.rand(2, 64), k=5, filter='color = "red"')
    index.ids(rows)

* :class:`Index`: build (numpy / torch / dicts / pandas / pyarrow), load, save, search,
  ids, fields, upsert / delete / patch (the semantics of ``silica serve``).
* :mod:`silica.torch`: ``IndexModule``, the index as an ``nn.Module`` (torch optional).
* :class:`Client`: a client for ``silica serve`` (JSON and binary bodies).
* Exceptions (``silica.SilicaError`` and subclasses) carry the CLI's messages.
"""

from ._errors import (AttributesError, BackendError, CountMismatchError, DimensionError, FilterError, FormatError,
                      InvalidParameter, ItemNotFound, NonFiniteError, OutOfRangeError, ServerError, SilicaError,
                      SilicaIOError, UpdateError, WalCorruptError)
from ._index import DeviceArray, Index
from ._silica import __version__
from ._silica import devices as _devices
from .client import Client


def devices():
    """What this build can run on: a list of dicts ``{backend, name, details, auto}``
    (``auto``: what ``device="auto"`` picks), as ``silica devices``."""
    return [dict(backend=b, name=n, details=d, auto=a) for b, n, d, a in _devices()]


__all__ = ["Index", "DeviceArray", "Client", "devices", "SilicaError", "InvalidParameter", "DimensionError", "NonFiniteError",
           "OutOfRangeError", "AttributesError", "CountMismatchError", "FilterError", "UpdateError", "ItemNotFound",
           "FormatError", "WalCorruptError", "SilicaIOError", "BackendError", "ServerError", "__version__"]
