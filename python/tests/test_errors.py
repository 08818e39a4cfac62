"""Every bad input raises a typed exception naming the field, and changes nothing."""

import numpy as np
import pytest

import silica
from conftest import catalog


@pytest.fixture
def small(rng):
    x, attrs = catalog(rng, 200, 8)
    ix = silica.Index.build(x, attrs, nlist=4, calibrate=False, progress=False)
    return ix, x, attrs


def build(x, attrs=None, **kw):
    kw.setdefault("calibrate", False)
    kw.setdefault("progress", False)
    return silica.Index.build(x, attrs, **kw)


def test_build_rejects_bad_vectors(rng):
    x = rng.standard_normal((50, 8)).astype(np.float32)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(silica.NonFiniteError) as e:
        build(bad)
    assert (e.value.row, e.value.col, e.value.field) == (7, 3, "vectors")
    assert isinstance(e.value, ValueError) and "row 7, column 3" in str(e.value)
    bad[7, 3] = np.inf
    with pytest.raises(silica.NonFiniteError):
        build(bad)
    big = x.astype(np.float64)
    big[2, 1] = 1e300  # finite, but not in f32
    with pytest.raises(silica.OutOfRangeError) as e:
        build(big)
    assert (e.value.row, e.value.col) == (2, 1)
    beyond_f16 = x.copy()
    beyond_f16[4, 0] = 1e6  # ip items must fit the f16 embeddings
    with pytest.raises(silica.OutOfRangeError) as e:
        build(beyond_f16)
    assert e.value.row == 4
    with pytest.raises(silica.DimensionError):
        build(x[None])
    with pytest.raises(silica.DimensionError):
        build(np.float32(1.0))
    with pytest.raises(silica.InvalidParameter):
        build(x.astype(np.int32))
    with pytest.raises(silica.InvalidParameter):
        build(np.array([["a", "b"]]))
    with pytest.raises(silica.InvalidParameter) as e:
        build(x[:0])
    assert e.value.field == "vectors"
    with pytest.raises(silica.InvalidParameter) as e:
        build(np.zeros((3, 4), np.float32), metric="cosine")
    assert "all zeros" in str(e.value)


def test_build_rejects_bad_settings(rng):
    x = rng.standard_normal((50, 8)).astype(np.float32)
    for kw, field in [
        (dict(nlist=51), "nlist"),
        (dict(nlist=0), "nlist"),
        (dict(metric="hamming"), "metric"),
        (dict(device="tpu"), "device"),
        (dict(build_device="tpu"), "build_device"),
        (dict(calibrate=True, target_recall=1.5), "target-recall"),
        (dict(bloom_bits=0), "bloom_bits"),
    ]:
        with pytest.raises(silica.InvalidParameter) as e:
            build(x, **kw)
        assert e.value.field == field, kw


def test_build_rejects_bad_attributes(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    good = [{"id": f"a{i}"} for i in range(4)]
    with pytest.raises(silica.CountMismatchError):
        build(x, good[:3])
    cases = [
        ([{"id": "a"}, {"id": "b"}, {"name": "x"}, {"id": "d"}], 2, "missing field `id`"),
        ([{"id": "a"}, {"id": "a"}, {"id": "c"}, {"id": "d"}], 1, "duplicate"),
        ([{"id": "a"}, {"id": ""}, {"id": "c"}, {"id": "d"}], 1, "empty"),
        ([{"id": "a"}, {"id": "b"}, {"id": "c", "tags": ["x", 1]}, {"id": "d"}], 2, "strings"),
        ([{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d", "w": float("nan")}], 3, "NaN"),
        ([{"id": "a"}, {"id": "b"}, "c", {"id": "d"}], 2, "dict"),
    ]
    for attrs, row, text in cases:
        with pytest.raises(silica.AttributesError) as e:
            build(x, attrs)
        assert e.value.row == row and e.value.field == f"attributes[{row}]", attrs
        assert text in str(e.value), str(e.value)
    with pytest.raises(silica.InvalidParameter) as e:
        build(x, good, features=["popularity"])  # no item carries it
    with pytest.raises(silica.InvalidParameter):
        build(x, {"id": "a"})


def test_search_rejects_bad_input(small):
    ix, x, _ = small
    q = x[:3]
    before = ix.search(q, 5, 'color = "red"')
    cases = [
        (lambda: ix.search(q[:, :5], 5), silica.DimensionError, "queries"),
        (lambda: ix.search(q, 0), silica.InvalidParameter, "k"),
        (lambda: ix.search(q, -1), silica.InvalidParameter, "k"),
        (lambda: ix.search(q, 2.5), silica.InvalidParameter, "k"),
        (lambda: ix.search(q, 5, nprobe=5), silica.InvalidParameter, "nprobe"),
        (lambda: ix.search(q, 5, nprobe=0), silica.InvalidParameter, "nprobe"),
        (lambda: ix.search(q, 5, k0=2), silica.InvalidParameter, "k0"),
        (lambda: ix.search(q, 5, rerank="fancy"), silica.InvalidParameter, "rerank"),
        (lambda: ix.search(q, 5, rerank="model"), silica.InvalidParameter, "rerank"),
        (lambda: ix.search(q, 5, 'color = "red'), silica.FilterError, "filter"),
        (lambda: ix.search(q, 5, 'colour = "red"'), silica.FilterError, "filter"),
        (lambda: ix.search(q, 5, ['color = "red"']), silica.CountMismatchError, "filter"),
        (lambda: ix.search(q, 5, [1, 2, 3]), silica.InvalidParameter, "filter[0]"),
        (lambda: ix.search(np.where(np.eye(3, 8) > 0, np.nan, q), 5), silica.NonFiniteError, "queries"),
        (lambda: ix.search(q.astype(np.int64), 5), silica.InvalidParameter, "queries"),
    ]
    for call, cls, field in cases:
        with pytest.raises(cls) as e:
            call()
        assert e.value.field == field, (cls, field, e.value.field, str(e.value))
    with pytest.raises(silica.FilterError) as e:
        ix.search(q, 5, 'color = "red" AND colour = "x"')
    assert e.value.column == 19 and "unknown field `colour`" in str(e.value)
    with pytest.raises(silica.InvalidParameter):
        ix.ids(np.array([0.5]))
    with pytest.raises(silica.InvalidParameter) as e:
        ix.fields([0], ["colour"])
    assert "colour" in str(e.value)
    after = ix.search(q, 5, 'color = "red"')
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_load_rejects_bad_files(tmp_path, small):
    ix = small[0]
    with pytest.raises(silica.SilicaIOError) as e:
        silica.Index.load(tmp_path / "missing.silica")
    assert isinstance(e.value, OSError)
    junk = tmp_path / "junk.silica"
    junk.write_bytes(b"not an index at all")
    with pytest.raises(silica.FormatError):
        silica.Index.load(junk)
    p = tmp_path / "i.silica"
    ix.save(p)
    raw = bytearray(p.read_bytes())
    raw[-10] ^= 0xFF  # flip a bit inside the last tensor
    bad = tmp_path / "bad.silica"
    bad.write_bytes(bytes(raw))
    with pytest.raises(silica.FormatError) as e:
        silica.Index.load(bad)
    assert "checksum" in str(e.value)
    with pytest.raises(silica.InvalidParameter):
        silica.Index.load(p, device="gpu9")
    with pytest.raises(silica.SilicaError):
        ix.save(tmp_path)  # a directory is refused, left as it was
    assert tmp_path.is_dir()
