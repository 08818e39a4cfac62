"""``silica.torch``: the index as a ``torch.nn.Module`` (torch is imported here only).

    import silica, silica.torch
    index = silica.Index.load("debian.silica", device="cuda")
    retrieve = silica.torch.IndexModule(index, k=10)
    scores, rows = retrieve(user_tower(features), filters='section = "games"')

``forward(user_embeddings, filters=None)`` takes a float tensor ``[B, D]`` on any device and
returns ``(scores float32 [B, k], rows int64 [B, k])`` on the same device (rows -1 / scores
-inf where fewer than k items pass). Retrieval is not differentiable: the outputs carry no
gradient (train the towers with a sampled-softmax loss as usual; the index serves them).

Data path, precisely: the query tensor is copied to the host (``tensor.cpu()``: one
device-to-host copy of ``B * D * 4`` bytes, synchronizing torch's current stream, so torch
stream order is respected), searched by the executor on the index's device with the GIL
released, and the results (``B * k * 12`` bytes) are copied back to the input's device.
Zero-copy DLPack into the CUDA backend is not implemented: the executor quantizes queries on
the host (part of the bit-identical integer contract) and owns its own CUDA context and
stream, so a device pointer from torch would need a device-side quantizer and cross-stream
events; ``scripts/python-h200.sh`` measures what the two copies cost against the Rust
executor at B = 256.

With a rerank model in the index, ``task_weights`` is an ``nn.Parameter`` (the model's
defaults) sent with every ``model`` rerank request, so it is saved in ``state_dict`` and can
be tuned like any other weight (without gradients through retrieval).
"""

import numpy as np
import torch
from torch import nn

from ._index import Index

__all__ = ["IndexModule"]


class IndexModule(nn.Module):
    """IndexModule(index, k=10, nprobe=None, k0=None, rerank=None)

    index: a :class:`silica.Index`. The search settings are the module's defaults and can
    be overridden per call in ``forward``.
    """

    def __init__(self, index, k=10, *, nprobe=None, k0=None, rerank=None):
        super().__init__()
        if not isinstance(index, Index):
            raise TypeError(f"IndexModule needs a silica.Index, got {type(index).__name__}")
        self.index = index
        self.k, self.nprobe, self.k0, self.rerank = k, nprobe, k0, rerank
        tasks = index.info.get("rerank_tasks")
        if tasks:
            self.task_weights = nn.Parameter(torch.tensor(tasks, dtype=torch.float32), requires_grad=False)
        else:
            self.task_weights = None

    def forward(self, user_embeddings, filters=None, *, k=None, nprobe=None, k0=None, rerank=None):
        if not torch.is_tensor(user_embeddings):
            user_embeddings = torch.as_tensor(user_embeddings)
        device = user_embeddings.device
        # One device-to-host copy (synchronizes the current stream, so the producer's
        # kernels are done), contiguous float32 as the executor takes it.
        q = user_embeddings.detach().to(dtype=torch.float32).contiguous().cpu().numpy()
        rr = rerank if rerank is not None else self.rerank
        tw = None
        if self.task_weights is not None and rr == "model":
            tw = self.task_weights.detach().cpu().tolist()
        scores, rows = self.index.search(q, k or self.k, filters, nprobe=nprobe or self.nprobe, k0=k0 or self.k0, rerank=rr, task_weights=tw)
        scores = torch.from_numpy(np.ascontiguousarray(scores))
        rows = torch.from_numpy(np.ascontiguousarray(rows))
        if device.type != "cpu":
            scores = scores.pin_memory().to(device, non_blocking=True)
            rows = rows.pin_memory().to(device, non_blocking=True)
        return scores, rows

    def extra_repr(self):
        return f"{self.index!r}, k={self.k}, nprobe={self.nprobe}, k0={self.k0}, rerank={self.rerank!r}"
