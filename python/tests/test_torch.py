"""silica.torch.IndexModule (skipped where torch is not installed, as in CI)."""

import numpy as np
import pytest

import silica
from conftest import catalog

torch = pytest.importorskip("torch")
import silica.torch as st  # noqa: E402


def test_index_module_matches_search_and_keeps_the_device(rng):
    x, attrs = catalog(rng, 400, 16)
    ix = silica.Index.build(x, attrs, nlist=4, calibrate=False, progress=False)
    mod = st.IndexModule(ix, k=5)
    q = torch.from_numpy(rng.standard_normal((6, 16))).to(torch.float64)  # any float dtype
    s, r = mod(q, 'color = "red"')
    ws, wr = ix.search(q.numpy(), 5, 'color = "red"')
    assert s.dtype == torch.float32 and r.dtype == torch.int64 and s.shape == (6, 5)
    assert np.array_equal(r.numpy(), wr) and np.array_equal(s.numpy(), ws)
    s2, r2 = mod(q, k=3, nprobe=4)
    assert r2.shape == (6, 3)
    with pytest.raises(silica.DimensionError):
        mod(q[:, :5])
    with pytest.raises(TypeError):
        st.IndexModule(object())
    if torch.cuda.is_available():
        s3, r3 = mod(q.cuda(), 'color = "red"')
        assert s3.is_cuda and r3.is_cuda and np.array_equal(r3.cpu().numpy(), wr)


def test_two_tower_ends_in_retrieval(rng):
    x, attrs = catalog(rng, 300, 16)
    ix = silica.Index.build(x, attrs, nlist=4, calibrate=False, progress=False)

    class TwoTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.user = torch.nn.Linear(8, 16)
            self.retrieve = st.IndexModule(ix, k=4)

        def forward(self, feats, filters=None):
            return self.retrieve(self.user(feats), filters)

    m = TwoTower()
    feats = torch.randn(5, 8)
    s, r = m(feats, ["", 'tags = "t1"', "", "", 'color = "blue"'])
    with torch.no_grad():
        u = m.user(feats).numpy()
    ws, wr = ix.search(u, 4, ["", 'tags = "t1"', "", "", 'color = "blue"'])
    assert np.array_equal(r.numpy(), wr)
    assert "retrieve" in dict(m.named_children())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_in_place(rng):
    x, attrs = catalog(rng, 700, 40)
    ix = silica.Index.build(x, attrs, nlist=8, calibrate=False, progress=False, device="cuda")
    q = torch.from_numpy(rng.standard_normal((37, 40)).astype(np.float32)).cuda()
    filters = ['color = "red"' if i % 3 else "" for i in range(37)]
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        s, r = ix.search(q.to(dtype), 6, filters, zero_copy=True)
        ws, wr = ix.search(q.to(dtype).float().cpu().numpy(), 6, filters)
        assert s.is_cuda and r.is_cuda and s.dtype == torch.float32 and r.dtype == torch.int64
        assert np.array_equal(r.cpu().numpy(), wr) and np.array_equal(s.cpu().numpy(), ws)
    with pytest.raises(silica.InvalidParameter, match="C-contiguous"):
        ix.search(q.t().contiguous().t(), 6)  # [37, 40] with column-major strides
    with pytest.raises(silica.InvalidParameter, match="float64"):
        ix.search(q.double(), 6)
    bad = q.clone()
    bad[5, 3] = float("nan")
    with pytest.raises(silica.NonFiniteError) as e:
        ix.search(bad, 6)
    assert (e.value.row, e.value.col) == (5, 3)
    cpu_ix = silica.Index.build(x, attrs, nlist=8, calibrate=False, progress=False, device="cpu")
    s, r = cpu_ix.search(q, 6)  # through the host, back on the input's device
    assert s.is_cuda and np.array_equal(r.cpu().numpy(), cpu_ix.search(q.cpu().numpy(), 6)[1])
    with pytest.raises(silica.BackendError):
        cpu_ix.search(q, 6, zero_copy=True)
