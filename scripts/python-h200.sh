#!/usr/bin/env bash
# The Python package on the H200 (issue 15), with only prebuilt files (no Rust, no network):
# installs the abi3 wheel into a venv that sees the host's torch (pip --no-deps --no-index),
# builds a synthetic catalog with the CLI on cuda, and runs scripts/python-h200.py on it:
#   * identity: Index.load(device="cuda").search == `silica search --backend cuda`, bit for bit;
#     torch CUDA tensors searched in place (f32, f16, bf16; unfiltered and a filtered mix)
#     == the numpy path, bit for bit;
#   * no host copy: torch.profiler traces of the in-place path list no memcpy of the query or
#     result size (the host-copy path, traced the same way, shows both); times per call;
#   * IndexModule ending a toy two-tower model: forward, a loss over the retrieved items'
#     embeddings, backward through the user tower, one optimizer step;
#   * QPS at B = 256 from Python (numpy in/out, and torch CUDA in/out in place) against
#     `silica eval --backend cuda --batch 256` on the same index and queries (target: Python at most 10% slower, >= 0.9x);
#     4 threads searching at once (the GIL is released).
# Everything lands in one tarball: $OUT/python-h200.tgz (summary.txt, python-h200.json, logs,
# the profiler traces).
#
#   OUT=/tmp/out bash scripts/python-h200.sh      # from anywhere; paths are from the repo root
#
# Inputs (prebuilt on a machine with the toolchain; .bin/ is a git-ignored folder for
# prebuilt copies carried to a GPU host without Rust):
#   the CLI:   $SILICA, else .bin/silica, else target/release/silica (cargo build --release)
#   the wheel: $SILICA_WHEEL, else the newest silica_retrieval-*.whl in .bin/, target/wheels/,
#              .whl/, python/dist/ or the repo root
#              (cd python && CARGO_TARGET_DIR=../target maturin build --release --out ../.bin)
# Environment: OUT [/tmp/python-h200]  N [1000000] catalog rows  D [128]  NQ [2048] queries
#   BACKEND [cuda] (cpu: a smoke test without a GPU; the torch checks then run on the CPU)
# Takes about 2 minutes on an H200 at the defaults.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${OUT:-/tmp/python-h200}"
res="$out/python-h200"
mkdir -p "$res"
n="${N:-1000000}"; d="${D:-128}"; nq="${NQ:-2048}"; backend="${BACKEND:-cuda}"
work="$(mktemp -d)"
log() { echo "[python-h200] $*" | tee -a "$res/summary.txt"; }
pack() {
  rm -rf "$work"
  tar czf "$out/python-h200.tgz" -C "$out" python-h200 && log "packed $out/python-h200.tgz"
}
trap pack EXIT

# 1. What runs: the CLI and the wheel, found from the environment or the repo root.
silica="${SILICA:-}"
if [ -z "$silica" ]; then
  for c in .bin/silica target/release/silica; do [ -f "$c" ] && { silica="$c"; break; }; done
fi
wheel="${SILICA_WHEEL:-}"
if [ -z "$wheel" ]; then
  for dir in .bin target/wheels .whl python/dist .; do
    f="$(ls -t "$dir"/silica_retrieval-*.whl 2>/dev/null | head -1)"
    [ -n "$f" ] && { wheel="$f"; break; }
  done
fi
log "repo root: $root"
log "silica CLI: ${silica:-NOT FOUND (set SILICA or carry .bin/silica)}"
log "wheel: ${wheel:-NOT FOUND} (searched \$SILICA_WHEEL, .bin/, target/wheels/, .whl/, python/dist/, ./)"
ls -la .bin target/wheels .whl 2>&1 | grep -v "^total" > "$res/inputs-ls.txt"
if [ -z "$silica" ] || [ -z "$wheel" ] || [ ! -f "$wheel" ]; then
  log "FAILED: missing inputs (listing of the searched folders in inputs-ls.txt)"
  exit 2
fi
chmod +x "$silica"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$res/gpu.txt" 2>&1 || true

# NVRTC for the kernels (the host's CUDA, or the nvidia-cuda-nvrtc wheel next to torch).
if [ "$backend" = cuda ]; then
  export SILICA_ENV_DIR="${SILICA_ENV_DIR:-$work/env}"
  . scripts/device-env.sh
  log "nvrtc: ${NVRTC_FOUND:-not found (kernels will not compile)}"
fi

# 2. The wheel unpacked beside the host's own python3 (PYTHONPATH; no registry, no venv:
# a host whose python3 is itself a venv holding torch and numpy, as the H200's is, would
# not show them to a nested venv). PYTHON overrides the interpreter.
py="${PYTHON:-python3}"
site="$work/site"; mkdir -p "$site"
if ! "$py" -m pip install --no-deps --no-index --target "$site" "$wheel" > "$res/pip.log" 2>&1; then
  # pip refuses a platform tag newer than the host's glibc claims: unpack it by hand.
  log "pip refused the wheel ($(tail -1 "$res/pip.log")); unpacking it"
  "$py" -m zipfile -e "$wheel" "$site"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
log "python: $(command -v "$py") ($("$py" --version 2>&1))"
"$py" -c "import silica, numpy; print('silica', silica.__version__, 'from', silica.__file__, 'numpy', numpy.__version__); print(silica.devices())" > "$res/import.txt" 2>&1
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >> "$res/import.txt" 2>&1
cat "$res/import.txt" | tee -a "$res/summary.txt"
grep -q "^silica" "$res/import.txt" || { log "FAILED: silica does not import"; exit 3; }

# 3. A synthetic catalog, built on the device; exact ground truth; a filtered mix.
t0=$(date +%s)
timeout 120 "$silica" synth --n "$n" --dim "$d" --queries "$nq" --out "$work/synth" > "$res/synth.log" 2>&1 || { log "FAILED: synth"; exit 4; }
build_backend=cpu; [ "$backend" = cuda ] && build_backend=cuda
timeout 180 "$silica" build --vectors "$work/synth/vectors.npy" --attributes "$work/synth/attributes.jsonl" --no-calibrate --backend "$build_backend" --out "$work/synth.silica" 2>&1 | grep -v ETA | tail -5 > "$res/build.log"
[ -f "$work/synth.silica" ] || { log "FAILED: build (build.log)"; exit 4; }
log "catalog N=$n D=$d built in $(( $(date +%s) - t0 )) s"
"$py" - "$work/synth" "$nq" <<'PY' > "$res/truth.log" 2>&1
import json, sys
import numpy as np
d, nq = sys.argv[1], int(sys.argv[2])
x = np.load(f"{d}/vectors.npy", mmap_mode="r")
q = np.load(f"{d}/queries.npy").astype(np.float32)
try:
    import torch
    assert torch.cuda.is_available()
    xt = torch.from_numpy(np.asarray(x, dtype=np.float16)).cuda().float()
    s, r = torch.topk(torch.from_numpy(q).cuda() @ xt.T, 10, dim=1)
    s, r = s.cpu().numpy(), r.cpu().numpy()
except Exception as e:
    print("truth on the host:", e)
    s = np.asarray(x, dtype=np.float32) @ q.T
    r = np.argsort(-s, axis=0)[:10].T
    s = np.take_along_axis(s.T, r, 1)
with open(f"{d}/truth.jsonl", "w") as t, open(f"{d}/filters.jsonl", "w") as f:
    for i in range(len(q)):
        t.write(json.dumps({"qid": i, "ids": [int(j) for j in r[i]], "scores": [float(v) for v in s[i]]}) + "\n")
        f.write('{"filter": ""}\n')
PY
python3 scripts/mkfilters.py "$work/synth/attributes.jsonl" "$nq" "$work/synth/mix.jsonl"

# 4. The Rust side on the same index: CLI results (identity) and the executor's QPS.
ix="$work/synth.silica"; q="$work/synth/queries.npy"
timeout 60 "$silica" search --index "$ix" --queries "$q" --filters "$work/synth/mix.jsonl" --k 10 --backend "$backend" --out "$work/cli.jsonl" 2> "$res/cli-search.err" || log "cli search failed (cli-search.err)"
timeout 90 "$silica" eval --index "$ix" --queries "$q" --filters "$work/synth/filters.jsonl" --ground-truth "$work/synth/truth.jsonl" --k 10 --backend "$backend" --batch 256 --json > "$res/rust-eval.json" 2> "$res/rust-eval.err" || log "rust eval failed (rust-eval.err)"
log "rust eval: $(head -c 400 "$res/rust-eval.json")"

# 5. The Python side.
SILICA_PY_DEVICE="$backend" timeout 240 "$py" scripts/python-h200.py "$res" "$ix" "$q" "$work/synth/mix.jsonl" "$work/cli.jsonl" "$res/rust-eval.json" "$work/synth/vectors.npy" \
  2>&1 | grep -v XDG_RUNTIME_DIR | tee "$res/python-h200.txt"
log "python: $(grep -E '^(RESULT|FAIL)' "$res/python-h200.txt" | tr '\n' ' ')"
log "total $(( $(date +%s) - t0 )) s"
