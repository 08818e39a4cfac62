"""DLPack inputs (numpy's ``__dlpack__``, kDLCPU): the capsule parsing and validation that
CUDA tensors go through too, here read in place on the host. The in-place CUDA path itself
is checked on a GPU (test_torch.py with CUDA, scripts/python-h200.sh)."""

import numpy as np
import pytest

import silica
from conftest import catalog


class Producer:
    """A DLPack producer that is not a numpy array (as a torch / CuPy / JAX array is)."""

    def __init__(self, a):
        self.a = a
        self.shape = a.shape

    def __dlpack__(self, stream=None, **kwargs):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


@pytest.fixture
def index(rng):
    x, attrs = catalog(rng, 300, 24)
    return silica.Index.build(x, attrs, nlist=4, calibrate=False, progress=False)


def test_float32_and_float16_match_the_numpy_path(index, rng):
    for b in (1, 7, 33):
        q = rng.standard_normal((b, 24)).astype(np.float32)
        filters = ['color = "red"' if i % 2 else "" for i in range(b)]
        for dtype in (np.float32, np.float16):
            qd = q.astype(dtype)
            s, r = index.search(Producer(qd), 5, filters)
            ws, wr = index.search(qd, 5, filters)
            assert s.dtype == np.float32 and r.dtype == np.int64 and s.shape == (b, 5)
            assert np.array_equal(r, wr) and np.array_equal(s, ws), (b, dtype)


def test_one_query_and_k_beyond_the_candidates(index, rng):
    q = rng.standard_normal(24).astype(np.float32)
    s, r = index.search(Producer(q), 400)
    ws, wr = index.search(q, 400)
    assert r.shape == (1, 400) and np.array_equal(r, wr) and np.array_equal(s, ws)
    assert (r[0, 300:] == -1).all() and np.isneginf(s[0, 300:]).all()


def test_empty_batch(index):
    s, r = index.search(Producer(np.zeros((0, 24), np.float32)), 3)
    assert s.shape == (0, 3) and r.shape == (0, 3)


def test_bad_tensors_raise_typed_errors(index, rng):
    q = rng.standard_normal((6, 48)).astype(np.float32)
    with pytest.raises(silica.InvalidParameter, match="C-contiguous") as e:
        index.search(Producer(q[:, ::2]), 5)  # [6, 24] with a column stride of 2
    assert e.value.field == "queries"
    with pytest.raises(silica.DimensionError):
        index.search(Producer(q), 5)  # D = 48
    with pytest.raises(silica.DimensionError):
        index.search(Producer(q.reshape(2, 3, 48)), 5)
    with pytest.raises(silica.InvalidParameter, match="int32"):
        index.search(Producer(np.ones((2, 24), np.int32)), 5)
    with pytest.raises(silica.InvalidParameter, match="float64"):
        index.search(Producer(np.ones((2, 24), np.float64)), 5)
    bad = rng.standard_normal((4, 24)).astype(np.float32)
    row, col = int(rng.integers(4)), int(rng.integers(24))
    bad[row, col] = np.nan
    with pytest.raises(silica.NonFiniteError) as e:
        index.search(Producer(bad), 5)
    assert (e.value.row, e.value.col) == (row, col)
    with pytest.raises(silica.InvalidParameter, match="dltensor"):
        index._core.search_dlpack(object(), 5, [], None, None, None, None, 0)
    with pytest.raises(silica.CountMismatchError):
        index.search(Producer(q[:, :24].copy()), 5, ["", ""])


def test_a_consumed_capsule_is_refused(index, rng):
    q = rng.standard_normal((2, 24)).astype(np.float32)
    cap = q.__dlpack__()
    np.from_dlpack(_Capsule(cap))  # numpy consumes it (renamed "used_dltensor")
    with pytest.raises(silica.InvalidParameter, match="not yet consumed"):
        index._core.search_dlpack(cap, 5, [], None, None, None, None, 0)


class _Capsule:
    def __init__(self, c):
        self.c = c

    def __dlpack__(self, stream=None, **kwargs):
        return self.c

    def __dlpack_device__(self):
        return (1, 0)


def test_cuda_arrays_need_an_index_on_their_gpu(index):
    class OnCuda(Producer):
        def __dlpack_device__(self):
            return (2, 0)
    q = OnCuda(np.zeros((2, 24), np.float32))
    with pytest.raises(silica.BackendError, match="in place"):
        index.search(q, 5)  # a CPU index: not in place, and no host copy of a non-torch array
