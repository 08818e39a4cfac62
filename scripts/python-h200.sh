#!/usr/bin/env bash
# The Python package on the H200 (issue 15), with only prebuilt files (no Rust there):
# installs the abi3 wheel into a venv that sees the host's torch, builds two indexes with the
# CLI (the Debian corpus; a synthetic 1M x 128 catalog built with --backend cuda), and runs
# scripts/python-h200.py on both:
#   * identity: Index.load(device="cuda").search == `silica search --backend cuda`, bit for bit;
#   * QPS from Python at B=256 (numpy in/out) against `silica eval --backend cuda --batch 256`
#     on the same index, queries and filters (the target: within 10%);
#   * torch CUDA tensors in and out of silica.torch.IndexModule (times of the copies and of
#     the search, the profiler's memcpy events), IndexModule closing a toy two-tower model,
#     and 4 threads searching at once (the GIL is released).
#
#   bash scripts/python-h200.sh          # run from the repository root
#
# Needs in .bin/ (git-ignored, carried to the device): `silica` (target/release/silica) and
# the wheel (cd python && CARGO_TARGET_DIR=../target maturin build --release --out ../.bin).
# Environment: OUT [/tmp/python-h200]  N [1000000] (synthetic catalog size)  SILICA [.bin/silica]
#   BACKEND [cuda] (cpu for a smoke test on a machine without a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
silica="${SILICA:-.bin/silica}"
wheel="$(ls .bin/silica_retrieval-*.whl | head -1)"
out="${OUT:-/tmp/python-h200}"; mkdir -p "$out"
work="$(mktemp -d)"; n="${N:-1000000}"; backend="${BACKEND:-cuda}"
export SILICA_PY_DEVICE="$backend"
build_backend=cpu; [ "$backend" = cuda ] && build_backend=cuda
nvidia-smi --query-gpu=name,driver_version --format=csv > "$out/gpu.txt" 2>&1 || true
python3 --version > "$out/python.txt" 2>&1

# The wheel into a venv that also sees the system's torch and numpy (--no-deps: no registry).
python3 -m venv --system-site-packages "$work/venv"
py="$work/venv/bin/python"
if ! "$py" -m pip install -q --no-deps --no-index "$wheel" > "$out/pip.log" 2>&1; then
  # pip refuses a platform tag newer than the host's glibc claims; the module only needs
  # the symbols the CLI binary needs too, so unpack it by hand.
  echo "pip refused the wheel ($(tail -1 "$out/pip.log")); unpacking it" | tee -a "$out/pip.log"
  site="$work/site"; mkdir -p "$site"; "$py" -m zipfile -e "$wheel" "$site"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" -c "import silica, numpy; print('silica', silica.__version__, 'numpy', numpy.__version__); print(silica.devices())" | tee "$out/import.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/import.txt" || true

prepare() { # name index queries filters truth
  local name=$1 ix=$2 q=$3 f=$4 gt=$5
  "$silica" search --index "$ix" --queries "$q" --filters "$f" --k 10 --backend "$backend" --out "$work/$name-cli.jsonl" 2> "$out/$name-search.err"
  "$silica" eval --index "$ix" --queries "$q" --filters "$f" --ground-truth "$gt" --k 10 --backend "$backend" --batch 256 --json > "$work/$name-eval.json" 2> "$out/$name-eval.err"
  cp "$work/$name-eval.json" "$out/"
  echo "$name: rust eval $(cat "$work/$name-eval.json")"
}

# 1. The Debian corpus (63,666 x 384, 80 filtered queries with ground truth).
# Skipped where data/debian did not travel (it does not fit the carry limit beside the binaries).
debian_args=()
if [ -f data/debian/embeddings.npy ]; then
  "$silica" build --vectors data/debian/embeddings.npy --attributes data/debian/items.jsonl --out "$work/debian.silica" 2> "$out/debian-build.err"
  prepare debian "$work/debian.silica" data/debian/queries.npy data/debian/queries.jsonl data/debian/ground_truth.jsonl
  debian_args=(debian "$work/debian.silica" data/debian/queries.npy data/debian/queries.jsonl "$work/debian-cli.jsonl" "$work/debian-eval.json")
else
  echo "data/debian absent: the synthetic catalog only"
fi

# 2. A synthetic catalog (the e2e bench's), unfiltered, exact ground truth from torch or numpy.
"$silica" synth --n "$n" --dim 128 --queries 2048 --out "$work/synth" 2> "$out/synth.err"
"$silica" build --vectors "$work/synth/vectors.npy" --attributes "$work/synth/attributes.jsonl" --out "$work/synth.silica" --backend "$build_backend" 2> "$out/synth-build.err"
"$py" - "$work/synth" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
x = np.load(f"{d}/vectors.npy", mmap_mode="r")
q = np.load(f"{d}/queries.npy").astype(np.float32)
try:
    import torch
    assert torch.cuda.is_available()
    xt = torch.from_numpy(np.asarray(x, dtype=np.float16)).cuda().float()
    s, r = torch.topk(torch.from_numpy(q).cuda() @ xt.T, 10, dim=1)
    s, r = s.cpu().numpy(), r.cpu().numpy()
except Exception:
    s = np.asarray(x, dtype=np.float32) @ q.T
    r = np.argsort(-s, axis=0)[:10].T
    s = np.take_along_axis(s.T, r, 1)
with open(f"{d}/truth.jsonl", "w") as t, open(f"{d}/filters.jsonl", "w") as f:
    for i in range(len(q)):
        t.write(json.dumps({"qid": i, "ids": [int(j) for j in r[i]], "scores": [float(v) for v in s[i]]}) + "\n")
        f.write('{"filter": ""}\n')
PY
prepare synth "$work/synth.silica" "$work/synth/queries.npy" "$work/synth/filters.jsonl" "$work/synth/truth.jsonl"

# 3. The Python side on both.
"$py" scripts/python-h200.py "$out" "${debian_args[@]}" \
  synth "$work/synth.silica" "$work/synth/queries.npy" "$work/synth/filters.jsonl" "$work/synth-cli.jsonl" "$work/synth-eval.json" \
  2>&1 | grep -v XDG_RUNTIME_DIR | tee "$out/python-h200.txt"
rm -rf "$work"
