"""silica.Client against a real `silica serve` on loopback: JSON and binary bodies agree
with Index.search on the same artifact; updates and errors."""

import subprocess

import numpy as np
import pytest

import silica
from conftest import catalog


@pytest.fixture
def served(silica_bin, rng, tmp_path):
    x, attrs = catalog(rng, 500, 16)
    p = tmp_path / "s.silica"
    silica.Index.build(x, attrs, nlist=8, progress=False).save(p)
    ref = silica.Index.load(p, device="cpu")
    proc = subprocess.Popen([silica_bin, "serve", "--index", str(p), "--addr", "127.0.0.1:0", "--backend", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield silica.Client(line.split()[-1], timeout=20), ref, x, attrs
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_client_search_matches_index(served, rng):
    client, ref, x, _ = served
    assert client.health()
    q = rng.standard_normal((7, 16)).astype(np.float32)
    filt = ['color = "red"', "", 'tags = "t1" OR tags = "t2"', "", "", 'NOT color = "red"', 'color = "nowhere"']
    want = ref.search(q, 6, filt)
    for binary in (True, False):
        s, r, ids, version = client.search(q, 6, filt, binary=binary, return_ids=True)
        assert version == 0
        np.testing.assert_array_equal(r, want[1])
        np.testing.assert_array_equal(s, want[0])
        assert ids == ref.ids(want[1])
    s, r = client.search(q, 3, 'color = "red"', nprobe=8, k0=64)
    ws, wr = ref.search(q, 3, 'color = "red"', nprobe=8, k0=64)
    np.testing.assert_array_equal(r, wr)


def test_client_updates_and_errors(served, rng):
    client, ref, x, attrs = served
    v = rng.standard_normal((1, 16)).astype(np.float32) * 3
    assert client.upsert(["c-1"], v, [{"color": "plum"}]) == 1
    s, r, ids, version = client.search(v, 1, 'color = "plum"', return_ids=True)
    assert ids[0][0] == "c-1" and version == 1
    assert client.patch("c-1", {"color": "red"}) == 2
    assert client.delete("c-1") == 3
    assert client.stats()["version"] == 3
    with pytest.raises(silica.ServerError) as e:
        client.delete("c-1")
    assert e.value.status == 404 and e.value.code == "not_found"
    with pytest.raises(silica.ServerError) as e:
        client.search(v, 5, 'colour = "x"')
    assert e.value.status == 400 and e.value.field == "filter"
    with pytest.raises(silica.ServerError) as e:
        client.search(v[:, :5], 5)
    assert e.value.status == 400 and e.value.field == "body"
    with pytest.raises(silica.ServerError) as e:
        client.upsert(["bad"], v, [{"colour": "x"}])
    assert e.value.field == "items[0].attributes.colour"
