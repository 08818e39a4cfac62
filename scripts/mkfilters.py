#!/usr/bin/env python3
# Filtered query mix for a synth catalog: one filter per query, cycling through the classes
# of issue 9's table (none, `lang IN (..) AND NOT status`, `country =`, `tags = AND NOT
# status`, `country = AND tags =`, `tags =`), values taken from real rows of attributes.jsonl.
#   silica synth --n N --queries 1024 --out CAT
#   python3 scripts/mkfilters.py CAT/attributes.jsonl 1024 CAT/filters.jsonl
# Used by scripts/serve-h200.sh, fresh-h200-call.sh and python-h200.sh (standard library only).
import json, sys
attrs, nq, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
with open(attrs) as f:
    for i, line in enumerate(f):
        if i % 97 == 0:
            rows.append(json.loads(line))
        if len(rows) >= nq:
            break
with open(out, "w") as f:
    for i in range(nq):
        r = rows[i % len(rows)]
        t = (r.get("tags") or ["t00000"])[0]
        cls = [
            "",
            f'lang IN ("{r["lang"]}", "l00") AND NOT status = "blocked"',
            f'country = "{r["country"]}"',
            f'tags = "{t}" AND NOT status = "blocked"',
            f'country = "{r["country"]}" AND tags = "{t}"',
            f'tags = "{t}"',
        ][i % 6]
        f.write(json.dumps({"filter": cls}) + "\n")
