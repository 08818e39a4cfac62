"""The bundled Debian corpus: the package's answers are `silica search`'s, bit for bit."""

import json
import subprocess

import numpy as np
import pytest

import silica
from conftest import DEBIAN


@pytest.fixture(scope="module")
def cli(silica_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("debian")
    art = d / "debian.silica"
    subprocess.run([silica_bin, "build", "--vectors", str(DEBIAN / "embeddings.npy"), "--attributes", str(DEBIAN / "items.jsonl"), "--out", str(art)], check=True, capture_output=True)
    out = d / "results.jsonl"
    subprocess.run([silica_bin, "search", "--index", str(art), "--queries", str(DEBIAN / "queries.npy"), "--filters", str(DEBIAN / "queries.jsonl"), "--k", "10", "--out", str(out)], check=True, capture_output=True)
    results = [json.loads(l) for l in out.read_text().splitlines()]
    return art, results


def filters():
    return [json.loads(l).get("filter") or "" for l in (DEBIAN / "queries.jsonl").read_text().splitlines()]


def check_same(index, results):
    q = np.load(DEBIAN / "queries.npy")
    scores, rows = index.search(q, 10, filters())
    ids = index.ids(rows)
    assert len(results) == q.shape[0]
    for i, r in enumerate(results):
        n = len(r["rows"])
        assert rows[i, :n].tolist() == r["rows"], f"query {i}"
        assert ids[i][:n] == r["ids"], f"query {i}"
        assert scores[i, :n].tolist() == [np.float32(s) for s in r["scores"]], f"query {i}"
        assert (rows[i, n:] == -1).all()


def test_loaded_artifact_answers_as_the_cli(cli):
    art, results = cli
    check_same(silica.Index.load(art, device="cpu"), results)


def test_built_from_numpy_and_dicts_answers_as_the_cli(cli):
    art, results = cli
    x = np.load(DEBIAN / "embeddings.npy")
    attrs = [json.loads(l) for l in (DEBIAN / "items.jsonl").read_text().splitlines()]
    ix = silica.Index.build(x, attrs, device="cpu", progress=False)
    assert ix.info["default_nprobe"] == silica.Index.load(art, device="cpu", verify=False).info["default_nprobe"]
    check_same(ix, results)
