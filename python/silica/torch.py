"""``silica.torch``: the index as a ``torch.nn.Module`` (torch is imported here only).

    import silica, silica.torch
    index = silica.Index.load("debian.silica", device="cuda")
    retrieve = silica.torch.IndexModule(index, k=10)
    scores, rows = retrieve(user_tower(features), filters='section = "games"')

``forward(user_embeddings, filters=None)`` takes a float tensor ``[B, D]`` on any device and
returns ``(scores float32 [B, k], rows int64 [B, k])`` on the same device (rows -1 / scores
-inf where fewer than k items pass). Retrieval is not differentiable: the outputs carry no
gradient (train the towers with a sampled-softmax loss as usual; the index serves them).

Data path, precisely: a CUDA tensor with an index loaded on its GPU (``device="cuda"``, no
updates yet) is searched in place (:meth:`silica.Index.search`): the executor reads the
queries from the tensor's memory through DLPack (validated, normalized and quantized on the
device, the same bits as the host path), runs its stages on its own CUDA stream ordered after
the work queued so far on torch's current stream (a CUDA event), and writes the results into
device memory it hands to torch with ``torch.from_dlpack``; torch's current stream waits for
them (another event), and the memory is freed when torch frees the tensors. Neither the
``[B, D]`` queries nor the ``[B, k]`` results cross PCIe (the filter plans and the stages'
small bookkeeping reads do, as in every search). Otherwise (CPU tensors, an index on the CPU
or wgpu, or with updates) the queries take one host copy and the results one copy back to the
input's device. ``zero_copy=True`` makes the in-place path required (BackendError otherwise).
Float dtypes other than float32 / float16 / bfloat16 are converted to float32 first.

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
    """IndexModule(index, k=10, nprobe=None, k0=None, rerank=None, zero_copy=None)

    index: a :class:`silica.Index`. The search settings are the module's defaults and can
    be overridden per call in ``forward``; ``zero_copy`` as in :meth:`silica.Index.search`.
    """

    def __init__(self, index, k=10, *, nprobe=None, k0=None, rerank=None, zero_copy=None):
        super().__init__()
        if not isinstance(index, Index):
            raise TypeError(f"IndexModule needs a silica.Index, got {type(index).__name__}")
        self.index = index
        self.k, self.nprobe, self.k0, self.rerank, self.zero_copy = k, nprobe, k0, rerank, zero_copy
        tasks = index.info.get("rerank_tasks")
        if tasks:
            self.task_weights = nn.Parameter(torch.tensor(tasks, dtype=torch.float32), requires_grad=False)
        else:
            self.task_weights = None

    def forward(self, user_embeddings, filters=None, *, k=None, nprobe=None, k0=None, rerank=None):
        if not torch.is_tensor(user_embeddings):
            user_embeddings = torch.as_tensor(user_embeddings)
        q = user_embeddings.detach()
        if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or not q.is_cuda:
            q = q.to(dtype=torch.float32)
        q = q.contiguous()
        rr = rerank if rerank is not None else self.rerank
        tw = None
        if self.task_weights is not None and rr == "model":
            tw = self.task_weights.detach().cpu().tolist()
        args = dict(nprobe=nprobe or self.nprobe, k0=k0 or self.k0, rerank=rr, task_weights=tw)
        if q.is_cuda:
            # torch tensors on q's device, in place when possible (see the module docs).
            return self.index.search(q, k or self.k, filters, zero_copy=self.zero_copy, **args)
        scores, rows = self.index.search(q.numpy(), k or self.k, filters, **args)
        return torch.from_numpy(np.ascontiguousarray(scores)), torch.from_numpy(np.ascontiguousarray(rows))

    def extra_repr(self):
        return f"{self.index!r}, k={self.k}, nprobe={self.nprobe}, k0={self.k0}, rerank={self.rerank!r}, zero_copy={self.zero_copy!r}"
