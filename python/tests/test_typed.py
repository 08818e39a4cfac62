"""Typed columns from Python: inferred ints, floats and bools, timestamps by ``schema``;
typed filters answered exactly; ``fields`` returns each value as its type; typing
mistakes raise errors naming the field, and nothing is built."""

from datetime import datetime

import numpy as np
import pytest

import silica


def when(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def typed_catalog(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    attrs = []
    for i in range(n):
        a = {"id": f"p{i}", "color": ["red", "green"][i % 2]}
        # row 0 carries every field, so every column exists even at n = 1
        if i == 0 or rng.random() < 0.9:
            a["price"] = float(np.round(rng.uniform(0, 100), 2))
        a["year"] = int(rng.integers(1990, 2025))
        if i == 0 or rng.random() < 0.7:
            a["in_stock"] = bool(rng.random() < 0.5)
        a["published"] = f"2024-0{1 + i % 9}-1{i % 10}T12:00:00Z"
        attrs.append(a)
    return x, attrs


@pytest.mark.parametrize("n", [1, 130, 700])
def test_typed_columns_filter_and_fields(rng, n):
    d = 8
    x, attrs = typed_catalog(rng, n, d)
    ix = silica.Index.build(x, attrs, nlist=max(1, min(n, 8)), calibrate=False, device="cpu", progress=False,
                            schema={"published": "timestamp"})
    assert ix.columns == {"in_stock": "bool", "price": "float", "published": "timestamp", "year": "int"}
    assert "color" in ix.field_names and not set(ix.columns) & set(ix.field_names), "typed columns are not string fields"
    q = rng.standard_normal((3, d)).astype(np.float32)
    checks = {
        "price < 30": lambda a: a.get("price") is not None and a["price"] < 30,
        "year BETWEEN 2000 AND 2010 AND color = \"red\"": lambda a: 2000 <= a["year"] <= 2010 and a["color"] == "red",
        "in_stock IS NULL": lambda a: "in_stock" not in a,
        "in_stock = true OR price >= 99.5": lambda a: a.get("in_stock") is True or a.get("price", -1) >= 99.5,
        "published >= \"2024-05-01T00:00:00Z\"": lambda a: a["published"] >= "2024-05-01",
    }
    for text, ok in checks.items():
        _, rows = ix.search(q, n, text, nprobe=ix.nlist, k0=max(64, n))
        want = {i for i, a in enumerate(attrs) if ok(a)}
        for r in rows:
            assert set(r[r >= 0].tolist()) == want, text
    rows = np.arange(n)
    got = ix.fields(rows)
    for i, f in enumerate(got):
        a = attrs[i]
        assert f["color"] == a["color"]
        assert f["price"] == a.get("price") and (f["price"] is None or isinstance(f["price"], float))
        assert f["year"] == a["year"] and isinstance(f["year"], int)
        assert f["in_stock"] == a.get("in_stock")
        assert when(f["published"]) == when(a["published"]), "RFC 3339, microseconds"
    assert ix.fields([0], ["year"]) == [{"year": attrs[0]["year"]}]


def test_typing_mistakes_are_named(rng):
    x, attrs = typed_catalog(rng, 20, 4)
    attrs[7]["year"] = "nineteen"
    with pytest.raises(silica.SilicaError, match="year"):
        silica.Index.build(x, attrs, nlist=2, calibrate=False, device="cpu", progress=False)
    x, attrs = typed_catalog(rng, 20, 4)
    with pytest.raises(silica.SilicaError, match="schema"):
        silica.Index.build(x, attrs, nlist=2, calibrate=False, device="cpu", progress=False, schema={"published": "date"})
    with pytest.raises(silica.InvalidParameter, match="schema"):
        silica.Index.build(x, attrs, nlist=2, calibrate=False, device="cpu", progress=False, schema=3)
    ix = silica.Index.build(x, attrs, nlist=2, calibrate=False, device="cpu", progress=False)
    assert "published" in ix.field_names, "without a schema an RFC 3339 string stays a string"
    with pytest.raises(silica.InvalidParameter, match="known fields"):
        ix.fields([0], ["colour"])
