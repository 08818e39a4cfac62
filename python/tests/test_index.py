"""Build from numpy + dicts, search with filters, ids and fields, save and load."""

import numpy as np
import pytest

import silica
from conftest import catalog


def exact_topk(items, queries, k, mask=None):
    """Brute force over the f16 embeddings the refine stage scores with."""
    e = items.astype(np.float16).astype(np.float64)
    s = queries.astype(np.float64) @ e.T
    if mask is not None:
        s[:, ~mask] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, order, 1)
    return np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-np.inf)


@pytest.mark.parametrize("n,d", [(1, 8), (97, 16), (1000, 24)])
def test_exhaustive_search_is_exact_with_filters(rng, n, d):
    x, attrs = catalog(rng, n, d)
    nlist = max(1, min(n, 8))
    ix = silica.Index.build(x, attrs, nlist=nlist, calibrate=False, device="cpu", progress=False)
    assert len(ix) == n and ix.dim == d and ix.nlist == nlist
    q = rng.standard_normal((5, d))  # float64 in: converted
    k = 7
    red = np.array([a["color"] == "red" for a in attrs])
    for filt, mask in ((None, None), ('color = "red"', red)):
        scores, rows = ix.search(q, k, filt, nprobe=nlist, k0=max(64, n))
        assert scores.dtype == np.float32 and rows.dtype == np.int64
        assert scores.shape == rows.shape == (5, k)
        want = exact_topk(x, q, k, mask)
        have = scores.astype(np.float64)
        fin = np.isfinite(want)
        # Padding exactly where fewer than k items pass.
        assert np.array_equal(fin, rows >= 0) and np.array_equal(fin, np.isfinite(have))
        np.testing.assert_allclose(have[fin], want[fin], rtol=1e-4, atol=1e-4)
        for qi in range(5):
            got = rows[qi][rows[qi] >= 0]
            assert len(set(got.tolist())) == len(got)
            if mask is not None:
                assert mask[got].all()
            # Scores are what the rows score (f16 embeddings, f32 math).
            s = x[got].astype(np.float16).astype(np.float64) @ q[qi]
            np.testing.assert_allclose(scores[qi][: len(got)], s, rtol=1e-4, atol=1e-4)


def test_ids_fields_and_shapes(rng):
    x, attrs = catalog(rng, 300, 16)
    ix = silica.Index.build(x, attrs, nlist=4, calibrate=False, progress=False)
    scores, rows = ix.search(x[:3], 4, ['tags = "t1"', "", 'color IN ("red", "blue") AND NOT tags = "t0"'], nprobe=4)
    ids = ix.ids(rows)
    assert len(ids) == 3 and all(len(r) == 4 for r in ids)
    for qi in range(3):
        for j in range(4):
            r = rows[qi, j]
            assert (ids[qi][j] is None) == (r < 0)
            if r >= 0:
                assert ids[qi][j] == attrs[r]["id"]
    # The unfiltered query's best item is the exact best (all lists probed; refine
    # re-scores the f16 embeddings in f32).
    assert rows[1, 0] == np.argmax(x.astype(np.float16).astype(np.float64) @ x[1].astype(np.float64))
    f = ix.fields(rows, ["color", "tags"])
    for qi in range(3):
        for j in range(4):
            r = rows[qi, j]
            if r < 0:
                assert f[qi][j] is None
                continue
            assert f[qi][j]["color"] == attrs[r]["color"]
            assert sorted(f[qi][j]["tags"]) == sorted(attrs[r].get("tags", []))
            if qi == 0:
                assert "t1" in f[qi][j]["tags"]
            if qi == 2:
                assert f[qi][j]["color"] in ("red", "blue") and "t0" not in f[qi][j]["tags"]
    assert ix.ids(np.array([-1, 0])) == [None, attrs[0]["id"]]
    assert ix.ids(5) == attrs[5]["id"]
    assert ix.fields([5], "color") == [{"color": attrs[5]["color"]}]


def test_k_beyond_candidates_pads(rng):
    x, attrs = catalog(rng, 50, 8, colors=("red",) * 9 + ("rare",))
    attrs[3]["color"] = "only"
    ix = silica.Index.build(x, attrs, nlist=2, calibrate=False, progress=False)
    scores, rows = ix.search(x[:2], 10, 'color = "only"')
    assert rows[:, 0].tolist() == [3, 3]
    assert (rows[:, 1:] == -1).all() and np.isneginf(scores[:, 1:]).all()
    scores, rows = ix.search(x[:1], 64)
    assert (rows[0, :50] >= 0).all() and (rows[0, 50:] == -1).all()


def test_dtypes_and_default_ids(rng):
    x = rng.standard_normal((200, 12))
    a = silica.Index.build(x.astype(np.float16), nlist=4, calibrate=False, progress=False)
    b = silica.Index.build(x.astype(np.float16).astype(np.float64), nlist=4, calibrate=False, progress=False)
    q = rng.standard_normal((3, 12)).astype(np.float32)
    sa, ra = a.search(q, 5)
    sb, rb = b.search(q, 5)
    assert np.array_equal(ra, rb) and np.array_equal(sa, sb)
    assert a.ids(ra[0]) == [str(r) for r in ra[0]]
    s1, r1 = a.search(q[0], 5)  # a 1-D query is one row
    assert np.array_equal(r1[0], ra[0])


def test_cosine_metric(rng):
    x = rng.standard_normal((120, 10)).astype(np.float32)
    ix = silica.Index.build(x * 7.0, metric="cosine", nlist=2, calibrate=False, progress=False)
    s, r = ix.search(x[:4] * 0.01, 1, nprobe=2)
    assert r[:, 0].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(s[:, 0], 1.0, atol=2e-3)


def test_l2_metric(rng):
    # Off-centre points at varied norms: l2 finds each point's own neighbourhood, and scores
    # are the negated squared distance to the stored f16 embedding.
    x = (rng.standard_normal((300, 12)) * rng.uniform(0.5, 3.0, (300, 1)) + 5.0).astype(np.float32)
    ix = silica.Index.build(x, metric="l2", nlist=4, calibrate=False, progress=False)
    assert ix.info["metric"] == "l2"
    q = x[:5] + 0.01
    s, r = ix.search(q, 3, nprobe=4)
    assert r[:, 0].tolist() == [0, 1, 2, 3, 4]
    e = x.astype(np.float16).astype(np.float64)
    d = ((e[r[:, 0]] - q.astype(np.float64)) ** 2).sum(1)
    np.testing.assert_allclose(s[:, 0], -d, rtol=1e-3, atol=1e-4)
    assert (np.diff(s, axis=1) <= 0).all(), "nearest first"
    with pytest.raises(silica.InvalidParameter):
        silica.Index.build(x, metric="manhattan", nlist=4, calibrate=False, progress=False)


def test_save_load_round_trip(rng, tmp_path):
    x, attrs = catalog(rng, 400, 16)
    ix = silica.Index.build(x, attrs, nlist=8, progress=False)
    q = rng.standard_normal((6, 16)).astype(np.float32)
    s0, r0 = ix.search(q, 5, 'color = "green"')
    p = tmp_path / "t.silica"
    ix.save(p)
    back = silica.Index.load(p, device="cpu")
    s1, r1 = back.search(q, 5, 'color = "green"')
    assert np.array_equal(r0, r1) and np.array_equal(s0, s1)
    assert back.info["default_nprobe"] == ix.info["default_nprobe"]


def _table_case(rng):
    """A catalog whose attributes leave `tags` out of some rows (a missing value) and carry a
    numeric rerank feature, the index built from the dicts, and queries with filters."""
    x, attrs = catalog(rng, 60, 8)
    attrs[0].pop("tags", None)  # the first row has no tags: column types come from all rows
    for a in attrs:
        a["pop"] = int(rng.integers(0, 100))
    ref = silica.Index.build(x, attrs, nlist=2, features=["pop"], calibrate=False, progress=False)
    filters = ['tags = "t2"', 'color = "red" AND NOT tags = "t0"', ""]
    return x, attrs, ref, filters


def _same_answers(ix, ref, x, filters):
    for f in filters:
        got, want = ix.search(x[:4], 5, f), ref.search(x[:4], 5, f)
        assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0]), f
    rows = np.arange(len(x))
    assert ix.fields(rows, ["color", "tags"]) == ref.fields(rows, ["color", "tags"])
    assert ix.ids(rows) == ref.ids(rows)


def test_pandas_dataframe_attributes(rng):
    pd = pytest.importorskip("pandas")
    x, attrs, ref, filters = _table_case(rng)
    df = pd.DataFrame(attrs)  # rows without tags hold NaN: an absent value
    assert df["tags"].isna().any()
    _same_answers(silica.Index.build(x, df, nlist=2, features=["pop"], calibrate=False, progress=False), ref, x, filters)


def test_pyarrow_table_attributes(rng):
    pa = pytest.importorskip("pyarrow")
    x, attrs, ref, filters = _table_case(rng)
    keys = sorted({k for a in attrs for k in a})
    table = pa.Table.from_pydict({k: [a.get(k) for a in attrs] for k in keys})  # None: absent
    _same_answers(silica.Index.build(x, table, nlist=2, features=["pop"], calibrate=False, progress=False), ref, x, filters)
    with pytest.raises(silica.CountMismatchError):
        silica.Index.build(x[:10], table, nlist=2, calibrate=False, progress=False)
