#!/usr/bin/env python3
"""Write a wrk Lua script that POSTs the 80 Debian queries (vector + filter, k=10) to
/v1/search in turn, one body per request, for `silica serve` load tests.

usage: scripts/serve-load.py data/debian OUT.lua
"""
import json, sys
import numpy as np

src, out = sys.argv[1], sys.argv[2]
q = np.load(f"{src}/queries.npy").astype(np.float32)
filters = [json.loads(l)["filter"] for l in open(f"{src}/queries.jsonl")]
assert len(filters) == len(q)
bodies = [json.dumps({"vector": [float(x) for x in row], "filter": f, "k": 10}) for row, f in zip(q, filters)]
with open(out, "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nbodies = {\n')
    for b in bodies:
        f.write("  [==[" + b + "]==],\n")
    f.write("}\n")
    # Each connection starts at its own offset so concurrent clients ask different queries.
    f.write("local i = 0\nfunction init(args) i = math.random(0, #bodies - 1) end\n")
    f.write("function request()\n  i = i % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend\n")
    # Fail loudly on non-200 answers.
    f.write("function response(status, headers, body)\n  if status ~= 200 then print(\"status \" .. status .. \": \" .. body) end\nend\n")
print(f"{len(bodies)} bodies -> {out}")
