#!/usr/bin/env python3
"""faiss-cpu IndexIVFFlat baseline for filtered top-k on the Debian corpus.

Requirements (this script installs nothing):

    python3 -m pip install faiss-cpu numpy

Run from the repository root:

    python3 benches/faiss_ivf.py --nlist 1024 --nprobe 16,32,64,128,256 --threads 2

What it does
------------
1. Loads ``data/debian/`` (see ``data/debian/README.md``): float16 item and query
   vectors, item attributes, the 80 queries with their filters, and the exact
   filtered top-100 ground truth.
2. Parses each query's filter with a small recursive-descent parser for the
   README grammar (OR / AND / NOT / parentheses / FIELD = "s" / FIELD IN ("a", ...),
   upper-case keywords, precedence NOT > AND > OR, ``\\"`` and ``\\\\`` escapes,
   ``tags`` multi-valued) and evaluates it with numpy into a boolean mask over the
   items. Asserts that every mask's pass fraction equals ``pass_fraction`` from
   queries.jsonl (to 1e-9), and that the ground truth is consistent with the masks
   and with float64 inner products.
3. Builds ``faiss.IndexIVFFlat`` (``METRIC_INNER_PRODUCT``, flat IP coarse quantizer,
   ``--nlist`` lists), trained on all vectors as float32, k-means seeded with
   ``--seed``; then adds all vectors.
4. For each nprobe in ``--nprobe``: searches one query per ``index.search`` call with
   ``faiss.SearchParametersIVF(sel=IDSelectorBitmap(packed mask), nprobe=P)``,
   k = ``--k`` (10), using ``faiss.omp_set_num_threads(--threads)``. Queries whose
   filter is the empty string get no selector (an engine would not filter them).
   The selector/parameter objects are built before timing.

Metrics per nprobe
------------------
- ``recall``: mean over the 80 queries of tie-aware recall@k, counted as
  ann-benchmarks does: a returned id is a hit when it passes the filter and its exact
  inner product (float64 over the float16 data) is >= the k-th ground-truth score
  minus 1e-9. The denominator is k, or the number of ground-truth ids when fewer than
  k items pass (then the threshold is the last ground-truth score).
- ``recall_lt1pct``: the same mean restricted to queries with pass_fraction < 0.01.
- ``violations``: total returned ids (over all queries, one pass) that fail the filter
  (should be 0).
- ``short``: queries that returned fewer than min(k, pass count) ids (-1 padding),
  i.e. the probed lists did not hold enough passing items.
- ``qps``: queries / wall time, over repeated passes of all 80 queries (one search
  call each) lasting at least ``--min-seconds`` (2 s), after one untimed warm-up pass.

With ``--json``, one JSON object per nprobe is printed (one per line) after the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import faiss
import numpy as np

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "debian")
SCALAR_FIELDS = (
    "id",
    "section",
    "component",
    "priority",
    "architecture",
    "multi_arch",
    "maintainer_domain",
)
LIST_FIELDS = ("tags",)
KEYWORDS = ("OR", "AND", "NOT", "IN")


# --------------------------------------------------------------------------- filter


class FilterError(ValueError):
    pass


def tokenize(src: str) -> list[tuple[str, str]]:
    """Split a filter into tokens: ('kw', 'AND'), ('field', 'tags'), ('str', 'v'), ('(', '(') ..."""
    toks: list[tuple[str, str]] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
        elif c in "(),=":
            toks.append((c, c))
            i += 1
        elif c == '"':
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise FilterError(f"unterminated string in {src!r}")
                c = src[i]
                if c == "\\":
                    if i + 1 >= n or src[i + 1] not in '"\\':
                        raise FilterError(f"bad escape at {i} in {src!r}")
                    buf.append(src[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            toks.append(("str", "".join(buf)))
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            word = src[i:j]
            if word in KEYWORDS:  # keywords are upper-case only
                toks.append(("kw", word))
            elif word in SCALAR_FIELDS or word in LIST_FIELDS:
                toks.append(("field", word))
            else:
                raise FilterError(f"unknown word {word!r} in {src!r}")
            i = j
        else:
            raise FilterError(f"unexpected {c!r} at {i} in {src!r}")
    return toks


class Items:
    """Column store of the item attributes for vectorized filter evaluation."""

    def __init__(self, rows: list[dict]):
        self.n = len(rows)
        self.cols = {f: np.array([r[f] for r in rows], dtype=object) for f in SCALAR_FIELDS}
        # tags as (item row, tag) pairs: one entry per tag occurrence
        tag_rows, tag_vals = [], []
        for i, r in enumerate(rows):
            for t in r["tags"]:
                tag_rows.append(i)
                tag_vals.append(t)
        self.tag_rows = np.array(tag_rows, dtype=np.int64)
        self.tag_vals = np.array(tag_vals, dtype=object)

    def match(self, field: str, values: list[str]) -> np.ndarray:
        if field in LIST_FIELDS:  # any tag equals any value
            mask = np.zeros(self.n, dtype=bool)
            mask[self.tag_rows[np.isin(self.tag_vals, values)]] = True
            return mask
        return np.isin(self.cols[field], values)


class Parser:
    """Recursive descent over the README grammar; evaluates straight to numpy masks.

    expr    := or
    or      := and ("OR" and)*
    and     := not ("AND" not)*
    not     := "NOT" not | primary
    primary := "(" expr ")" | FIELD "=" STRING | FIELD "IN" "(" STRING ("," STRING)* ")"
    """

    def __init__(self, src: str, items: Items):
        self.src = src
        self.toks = tokenize(src)
        self.pos = 0
        self.items = items

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, kind: str, value: str | None = None) -> str:
        t = self.peek()
        if t is None or t[0] != kind or (value is not None and t[1] != value):
            raise FilterError(f"expected {value or kind} at token {self.pos}, got {t} in {self.src!r}")
        self.pos += 1
        return t[1]

    def at_kw(self, kw: str) -> bool:
        return self.peek() == ("kw", kw)

    def parse(self) -> np.ndarray:
        if not self.toks:  # empty filter passes everything
            return np.ones(self.items.n, dtype=bool)
        m = self.parse_or()
        if self.peek() is not None:
            raise FilterError(f"trailing tokens from {self.pos} in {self.src!r}")
        return m

    def parse_or(self) -> np.ndarray:
        m = self.parse_and()
        while self.at_kw("OR"):
            self.pos += 1
            m = m | self.parse_and()
        return m

    def parse_and(self) -> np.ndarray:
        m = self.parse_not()
        while self.at_kw("AND"):
            self.pos += 1
            m = m & self.parse_not()
        return m

    def parse_not(self) -> np.ndarray:
        if self.at_kw("NOT"):
            self.pos += 1
            return ~self.parse_not()
        return self.parse_primary()

    def parse_primary(self) -> np.ndarray:
        t = self.peek()
        if t == ("(", "("):
            self.pos += 1
            m = self.parse_or()
            self.take(")")
            return m
        field = self.take("field")
        if self.at_kw("IN"):
            self.pos += 1
            self.take("(")
            values = [self.take("str")]
            while self.peek() == (",", ","):
                self.pos += 1
                values.append(self.take("str"))
            self.take(")")
        else:
            self.take("=")
            values = [self.take("str")]
        return self.items.match(field, values)


def eval_filter(src: str, items: Items) -> np.ndarray:
    return Parser(src, items).parse()


def self_test(items: Items) -> None:
    """A few parser checks (precedence, escapes, tags semantics)."""
    a = eval_filter('architecture = "all"', items)
    l = eval_filter('section = "libs"', items)
    s = eval_filter('multi_arch = "same"', items)
    assert np.array_equal(
        eval_filter('architecture = "all" OR section = "libs" AND multi_arch = "same"', items), a | (l & s)
    )
    assert np.array_equal(eval_filter('NOT architecture = "all" AND section = "libs"', items), ~a & l)
    assert np.array_equal(eval_filter('NOT (architecture = "all" AND section = "libs")', items), ~(a & l))
    assert np.array_equal(eval_filter('NOT NOT section = "libs"', items), l)
    assert eval_filter("", items).all() and eval_filter("  ", items).all()
    assert not eval_filter('id = "no\\"such\\\\pkg"', items).any()
    assert tokenize('id = "a\\"b\\\\c"')[-1] == ("str", 'a"b\\c')
    notag = np.ones(items.n, dtype=bool)
    notag[items.tag_rows] = False
    assert not eval_filter('tags = "role::program"', items)[notag].any()
    assert eval_filter('NOT tags = "role::program"', items)[notag].all()
    both = eval_filter('tags IN ("role::program", "role::shared-lib")', items)
    assert np.array_equal(both, eval_filter('tags = "role::program" OR tags = "role::shared-lib"', items))
    for bad in ('section = "a', 'section == "a"', 'section = "a" and section = "b"', 'foo = "a"',
                'section = "a\\n"', '(section = "a"', 'section IN ()', 'section = "a" section = "b"'):
        try:
            eval_filter(bad, items)
        except FilterError:
            continue
        raise AssertionError(f"accepted bad filter {bad!r}")


# --------------------------------------------------------------------------- data


def load(data_dir: str):
    def jsonl(name):
        with open(os.path.join(data_dir, name), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    emb16 = np.load(os.path.join(data_dir, "embeddings.npy"))
    q16 = np.load(os.path.join(data_dir, "queries.npy"))
    items = Items(jsonl("items.jsonl"))
    queries = jsonl("queries.jsonl")
    gt = {g["qid"]: g for g in jsonl("ground_truth.jsonl")}
    assert emb16.dtype == np.float16 and q16.dtype == np.float16
    assert emb16.shape[0] == items.n and q16.shape[0] == len(queries) == len(gt)
    assert [q["qid"] for q in queries] == list(range(len(queries)))
    return emb16, q16, items, queries, [gt[q["qid"]] for q in queries]


def check_ground_truth(masks, exact, gts) -> None:
    """Ground truth ids pass the filter, scores match float64 dot products, list is the top."""
    for qi, (mask, g) in enumerate(zip(masks, gts)):
        ids = np.asarray(g["ids"], dtype=np.int64)
        sc = np.asarray(g["scores"], dtype=np.float64)
        assert mask[ids].all(), f"qid {qi}: ground truth id fails filter"
        assert len(ids) == min(100, int(mask.sum())), f"qid {qi}: ground truth length"
        assert np.abs(exact[ids, qi] - sc).max() <= 1e-9, f"qid {qi}: score mismatch"
        rest = mask.copy()
        rest[ids] = False
        if rest.any():
            assert exact[rest, qi].max() <= sc[-1] + 1e-9, f"qid {qi}: ground truth not the top"


# --------------------------------------------------------------------------- bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="corpus directory (default: data/debian)")
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", default="16,32,64,128,256", help="comma-separated list")
    ap.add_argument("--threads", type=int, default=2, help="faiss.omp_set_num_threads (train and search)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234, help="faiss k-means seed")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="minimum timed duration per nprobe")
    ap.add_argument("--json", action="store_true", help="also print one JSON object per nprobe")
    args = ap.parse_args()
    nprobes = [int(x) for x in args.nprobe.split(",") if x.strip()]
    k = args.k

    faiss.omp_set_num_threads(args.threads)
    emb16, q16, items, queries, gts = load(args.data)
    nq, d = q16.shape

    # filters -> masks, checked against the published pass fractions
    self_test(items)
    masks = [eval_filter(q["filter"], items) for q in queries]
    for q, m in zip(queries, masks):
        frac = m.sum() / items.n
        assert abs(frac - q["pass_fraction"]) <= 1e-9, f"qid {q['qid']}: {frac} != {q['pass_fraction']}"
    pf = np.array([q["pass_fraction"] for q in queries])
    low = pf < 0.01

    # exact float64 inner products of every item with every query
    exact = emb16.astype(np.float64) @ q16.astype(np.float64).T  # [n, nq]
    check_ground_truth(masks, exact, gts)
    denom = np.array([min(k, len(g["ids"])) for g in gts])
    thresh = np.array([g["scores"][dn - 1] for g, dn in zip(gts, denom)]) - 1e-9

    # index
    xb = np.ascontiguousarray(emb16.astype(np.float32))
    xq = np.ascontiguousarray(q16.astype(np.float32))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, args.nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = args.seed
    t0 = time.perf_counter()
    index.train(xb)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.add(xb)
    t_add = time.perf_counter() - t0
    sizes = np.array([index.invlists.list_size(i) for i in range(args.nlist)])

    print(f"faiss {faiss.__version__}  numpy {np.__version__}  python {platform.python_version()}")
    print(f"items {items.n}  dim {d}  queries {nq} ({int(low.sum())} with pass_fraction < 0.01)  k {k}")
    print(f"IndexIVFFlat IP nlist {args.nlist}  spherical k-means {bool(index.cp.spherical)}  "
          f"niter {index.cp.niter}  seed {args.seed}  train {t_train:.2f}s  add {t_add:.2f}s")
    print(f"list sizes: min {sizes.min()}  median {int(np.median(sizes))}  max {sizes.max()}  "
          f"empty {(sizes == 0).sum()}")
    print(f"threads {args.threads}  one query per search call; empty filter -> no selector")
    print()

    qrows = [xq[i : i + 1] for i in range(nq)]
    header = f"{'nprobe':>6}  {'recall@%d' % k:>9}  {'recall<1%':>9}  {'violations':>10}  {'short':>5}  {'QPS':>9}  {'ms/query':>8}"
    print(header)
    print("-" * len(header))
    results = []
    for nprobe in nprobes:
        params = []
        for q, m in zip(queries, masks):
            if q["filter"].strip():
                sel = faiss.IDSelectorBitmap(np.packbits(m, bitorder="little"))
                params.append(faiss.SearchParametersIVF(sel=sel, nprobe=nprobe))
            else:
                params.append(faiss.SearchParametersIVF(nprobe=nprobe))

        # warm-up pass, also the pass that is scored
        labels = np.empty((nq, k), dtype=np.int64)
        for i in range(nq):
            _, labels[i] = index.search(qrows[i], k, params=params[i])

        rec = np.zeros(nq)
        violations = 0
        short = 0
        for i in range(nq):
            ids = labels[i][labels[i] >= 0]
            ok = masks[i][ids]
            violations += int((~ok).sum())
            hits = int((ok & (exact[ids, i] >= thresh[i])).sum())
            rec[i] = hits / denom[i]
            short += int(len(ids) < denom[i])

        passes = 0
        t0 = time.perf_counter()
        while True:
            for i in range(nq):
                index.search(qrows[i], k, params=params[i])
            passes += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= args.min_seconds:
                break
        qps = passes * nq / elapsed

        r = {
            "engine": "faiss-IndexIVFFlat",
            "faiss": faiss.__version__,
            "nlist": args.nlist,
            "nprobe": nprobe,
            "k": k,
            "threads": args.threads,
            "recall": float(rec.mean()),
            "recall_lt1pct": float(rec[low].mean()) if low.any() else None,
            "n_lt1pct": int(low.sum()),
            "violations": violations,
            "short": short,
            "qps": qps,
            "passes": passes,
            "seconds": elapsed,
        }
        results.append(r)
        print(f"{nprobe:>6}  {r['recall']:>9.4f}  {r['recall_lt1pct']:>9.4f}  {violations:>10}  "
              f"{short:>5}  {qps:>9.1f}  {1000 / qps:>8.3f}", flush=True)

    if args.json:
        print()
        for r in results:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
