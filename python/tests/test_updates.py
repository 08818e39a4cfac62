"""upsert / delete / patch: the server's validation and snapshot semantics, round trips."""

import gc

import numpy as np
import pytest

import silica
from conftest import catalog


@pytest.fixture
def ix(rng):
    x, attrs = catalog(rng, 300, 16)
    return silica.Index.build(x, attrs, nlist=4, calibrate=False, progress=False), x, attrs


def top1(index, q, filt=None):
    s, r = index.search(q[None], 1, filt, nprobe=4)
    return index.ids(r)[0][0], s[0, 0]


def test_upsert_delete_patch_round_trip(ix, rng, tmp_path):
    index, x, attrs = ix
    assert index.version == 0
    v = rng.standard_normal(16).astype(np.float32) * 3
    assert index.upsert(["fresh-1"], v[None], [{"color": "violet", "tags": ["t9"]}]) == 1
    assert index.version == 1 and len(index) == 301
    assert top1(index, v) [0] == "fresh-1"
    assert top1(index, v, 'color = "violet"')[0] == "fresh-1"
    s, r = index.search(v[None], 1, nprobe=4)
    assert index.fields(r[0], ["color", "tags"]) == [{"color": "violet", "tags": ["t9"]}]

    # Replace an existing id: its old row disappears, the new vector is found.
    old_row = 5
    assert index.ids([old_row]) == [attrs[old_row]["id"]]
    w = rng.standard_normal(16).astype(np.float32) * 3
    index.upsert([attrs[old_row]["id"]], w[None], [{"color": "red"}])
    assert index.ids([old_row]) == [None]
    assert top1(index, w)[0] == attrs[old_row]["id"]
    s, r = index.search(x[old_row][None], 300, nprobe=4)
    assert old_row not in r[0].tolist()

    # Delete: gone from results and ids.
    index.delete("fresh-1")
    assert len(index) == 300
    s, r = index.search(v[None], 10, 'color = "violet"')
    assert (r == -1).all()

    # Patch: the filter follows the new value, not the old one.
    target = attrs[10]["id"]
    s, r = index.search(x[10][None], 5, 'color = "amber"', nprobe=4)  # not a value yet
    assert (r == -1).all()
    index.patch(target, {"color": "amber"})
    s, r = index.search(x[10][None], 5, 'color = "amber"', nprobe=4)
    assert index.ids(r)[0][0] == target and (r[0, 1:] == -1).all()
    s, r = index.search(x[10][None], 300, f'color = "{attrs[10]["color"]}"', nprobe=4)
    assert 10 not in r[0].tolist()
    index.patch([target], [{"tags": []}])
    assert index.fields([10], ["tags"]) == [{"tags": []}]
    assert index.version == 5

    # Save folds everything in; a reload answers the same (ids and scores; rows renumber).
    q = np.stack([w, x[10], x[20]])
    s0, r0 = index.search(q, 5, nprobe=4)
    ids0 = index.ids(r0)
    p = tmp_path / "u.silica"
    index.save(p)
    back = silica.Index.load(p, device="cpu")
    s1, r1 = back.search(q, 5, nprobe=4)
    assert back.ids(r1) == ids0 == index.ids(index.search(q, 5, nprobe=4)[1])
    np.testing.assert_array_equal(s0, s1)
    assert len(back) == 300 and back.fields(r1[0, :1], ["color"]) == [{"color": "red"}]


def test_bad_updates_raise_and_change_nothing(ix, rng):
    index, x, attrs = ix
    q = x[:4]
    before = index.search(q, 5)
    d = 16
    good = rng.standard_normal((1, d)).astype(np.float32)
    # Beyond the f16 range at column 0 exactly (scaling random values left it to chance).
    huge = good.copy()
    huge[0, 0] = 1e6
    nan = good.copy()
    nan[0, 3] = np.nan
    cases = [
        (lambda: index.upsert(["a"], good[:, :5]), silica.DimensionError, "vectors"),
        (lambda: index.upsert(["a"], nan), silica.NonFiniteError, "vectors"),
        (lambda: index.upsert([""], good), silica.UpdateError, "items[0].id"),
        (lambda: index.upsert(["a"], good, [{"colour": "x"}]), silica.UpdateError, "items[0].attributes.colour"),
        (lambda: index.upsert(["a"], good, [{"id": "b"}]), silica.UpdateError, "items[0].attributes.id"),
        (lambda: index.upsert(["a"], good, [{"color": 3}]), silica.UpdateError, "items[0].attributes.color"),
        (lambda: index.upsert(["a"], good, [{"tags": ["x", 1]}]), silica.UpdateError, "items[0].attributes.tags[1]"),
        (lambda: index.upsert(["a"], good, None, [{"weight": 1.0}]), silica.UpdateError, "items[0].features.weight"),
        (lambda: index.upsert(["a", "b"], good), silica.CountMismatchError, "ids"),
        (lambda: index.upsert(["a"], huge), silica.UpdateError, "items[0].vector[0]"),
        (lambda: index.upsert([], good[:0]), silica.UpdateError, "items"),
        (lambda: index.delete([]), silica.UpdateError, "ids"),
        (lambda: index.patch([], []), silica.UpdateError, "ids"),
        (lambda: index.delete("nope"), silica.ItemNotFound, "id"),
        (lambda: index.patch("nope", {"color": "red"}), silica.ItemNotFound, "id"),
        (lambda: index.patch(attrs[0]["id"], {"colour": "red"}), silica.UpdateError, "attributes.colour"),
    ]
    for call, cls, field in cases:
        with pytest.raises(cls) as e:
            call()
        assert e.value.field == field or (field in ("vectors",) and e.value.field is not None), (field, e.value.field, str(e.value))
    # A batch is atomic: one bad item keeps the good one out too.
    two = rng.standard_normal((2, d)).astype(np.float32)
    with pytest.raises(silica.UpdateError) as e:
        index.upsert(["ok", "bad"], two, [{"color": "red"}, {"colour": "red"}])
    assert e.value.field == "items[1].attributes.colour"
    with pytest.raises(silica.ItemNotFound):
        index.delete([attrs[0]["id"], "nope"])
    assert index.ids([0]) == [attrs[0]["id"]]
    assert len(index) == 300 and index.version == 0
    after = index.search(q, 5)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert isinstance(silica.ItemNotFound("x"), LookupError)


def test_updates_are_logged_and_replayed_at_load(ix, rng, tmp_path):
    index, x, _ = ix
    p = tmp_path / "w.silica"
    index.save(p)
    a = silica.Index.load(p, device="cpu")
    v = rng.standard_normal((1, 16)).astype(np.float32) * 3
    a.upsert(["logged"], v, [{"color": "teal"}])
    assert (tmp_path / "w.silica.wal").exists()
    # The artifact is locked while this index can write it, as `silica serve` locks it.
    with pytest.raises(silica.SilicaError) as e:
        silica.Index.load(p, device="cpu")
    assert "held by another" in str(e.value)
    del a
    gc.collect()
    b = silica.Index.load(p, device="cpu")
    assert b.version == 1
    assert top1(b, v[0], 'color = "teal"')[0] == "logged"


def test_threads_search_while_another_updates(ix, rng):
    """Searches from several threads (the GIL is released) while one thread updates: no
    deadlock, every answer is whole (snapshot isolation), every update lands."""
    import threading

    index, x, _ = ix
    q = x[:8]
    errors, done = [], threading.Event()

    def searcher():
        try:
            while not done.is_set():
                s, r = index.search(q, 5, 'color = "red"', nprobe=4)
                assert (r[:, 0] >= 0).all()
                index.ids(r)
                len(index)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=searcher, daemon=True) for _ in range(3)]
    [t.start() for t in ts]
    vs = rng.standard_normal((20, 16)).astype(np.float32)
    for i in range(20):
        index.upsert([f"t-{i}"], vs[i:i + 1], [{"color": "red"}])
        try:
            index.delete("nope")
        except silica.ItemNotFound:
            pass
    done.set()
    for t in ts:
        t.join(timeout=60)
        assert not t.is_alive(), "a search thread hung"
    assert not errors, errors
    assert index.version == 20 and len(index) == 320
