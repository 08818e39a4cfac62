#!/usr/bin/env bash
# Serving throughput on the H200 in one device call (issue 12): the executor's own QPS at
# B = 256 and `silica serve --backend cuda` over HTTP at 16/64/256/1024 connections,
# `--workers 1` and `3`, binary body, on the same index, query mix and nprobe, so that the
# HTTP/executor ratio is read off one run. Needs only prebuilt binaries and python3 (numpy
# and matplotlib optional: scripts/plot-serve.py has a built-in PNG writer).
#
#   scripts/serve-h200.sh                                   # the whole call: 5M catalog built here
#   scripts/serve-h200.sh INDEX QUERIES.npy FILTERS.jsonl [SECS]   # an existing index and query mix
#
# The whole call: GPU checks (when the test binaries are in $BIN: `conformance cuda::`,
# with the concurrent-lanes case, and `serve_pipeline`), `silica synth --n $N --queries
# 1024` + scripts/mkfilters.py (issue 9's six filter classes) + `silica build
# --backend cuda --nlist 4096`, then for each nprobe in $NPROBES the executor (`silica
# eval --batch 256`, serial calls) and the HTTP sweep. Everything lands in $OUT: exec-*.json,
# load-np<P>-w<W>-c<C>-<body>.json (one `silica load --out` report each), metrics-*.txt
# (/metrics after each run), serve-*.log, summary.json / summary.txt (all runs, HTTP/executor
# ratios) and serve-curve-np<P>.png.
#
# Environment (defaults in brackets):
#   BIN [target/release; .bin/h1 when that git-ignored folder of prebuilt copies holds silica]:
#     silica (+ optional test binaries named conformance, serve_pipeline: copies of
#     target/release/deps/NAME-*)
#   OUT [/tmp/serve-h200]  PORT [18200]  N [5000000]  SCRATCH [/tmp/s12] (catalog, deleted after)
#   NPROBES ["default 32"] ("default": the index's calibrated nprobe)  CONNS ["16 64 256 1024"]
#   WORKERS ["1 3"]  BODIES ["binary"]  SECS [5] per point after WARMUP [2]  K [10]
#   SERVE_THREADS [10] (HTTP threads)  LOAD_THREADS [6] (client threads)  BACKEND [cuda]
#   NLIST [4096]  BUILD_BACKEND [cuda; cpu when BACKEND is not cuda] (a CPU smoke run: BACKEND=cpu N=20000 NLIST=64)
#   SERVE_FLAGS [""] (e.g. "--max-batch 512 --max-wait-us 300")  LOAD_FLAGS [""] (extra `silica load` flags)
#   OPEN_RATE [0] (also an open-loop run at this rate, 1024 connections)
# Device time at the defaults: ~1 min build, ~25 s checks, ~2 x (10 s executor + 2 x 4 x 7 s HTTP) = ~5-6 min.
set -uo pipefail
bin="${BIN:-}"
if [ -z "$bin" ]; then if [ -x .bin/h1/silica ]; then bin=.bin/h1; else bin=target/release; fi; fi
silica="${SILICA:-$bin/silica}"
# The serve tests start the server binary from SILICA_BIN (tests/serve_common), not from the
# path cargo baked in at build time.
export SILICA_BIN="${SILICA_BIN:-$(realpath -m "$silica")}"
out="${OUT:-/tmp/serve-h200}"; mkdir -p "$out"
port="${PORT:-18200}"; conns="${CONNS:-16 64 256 1024}"; bodies="${BODIES:-binary}"
workers_list="${WORKERS:-1 3}"; k="${K:-10}"; secs="${SECS:-5}"; warmup="${WARMUP:-2}"
nprobes="${NPROBES:-default 32}"; backend="${BACKEND:-cuda}"; open_rate="${OPEN_RATE:-0}"
serve_threads="${SERVE_THREADS:-10}"; load_threads="${LOAD_THREADS:-6}"
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] == $*"; }

. "$(dirname "$0")/device-env.sh"   # libnvrtc under the name cudarc loads; NCCL_NVLS_ENABLE=0
chmod +x "$bin"/* 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
nproc > "$out/nproc.txt"; "$silica" --version > "$out/version.txt" 2>&1 || true

scratch=""
if [ $# -ge 3 ]; then
  index="$1"; queries="$2"; filters="$3"; secs="${4:-$secs}"
else
  for t in conformance serve_pipeline; do
    [ -x "$bin/$t" ] || continue
    filt=""; [ $t = conformance ] && filt="cuda::"
    el "test $t $filt"; SILICA_REQUIRE_BACKENDS=cuda timeout 180 "$bin/$t" $filt > "$out/test-$t.log" 2>&1; echo "exit $?"
    grep -E "test result|panicked|FAILED" "$out/test-$t.log" | head -6
  done
  scratch="${SCRATCH:-/tmp/s12}"; mkdir -p "$scratch"
  el "synth ${N:-5000000}"; "$silica" synth --n "${N:-5000000}" --queries 1024 --out "$scratch/cat" 2>&1 | tail -1
  python3 scripts/mkfilters.py "$scratch/cat/attributes.jsonl" 1024 "$scratch/cat/filters.jsonl"
  bb="${BUILD_BACKEND:-cuda}"; [ "$backend" = cuda ] || bb="${BUILD_BACKEND:-cpu}"
  el "build $bb"; ( time "$silica" build --backend "$bb" --vectors "$scratch/cat/vectors.npy" --attributes "$scratch/cat/attributes.jsonl" --nlist "${NLIST:-4096}" --out "$scratch/cuda.silica" ) > "$out/build.log" 2>&1; echo "exit $?"
  grep -E "^built|^real" "$out/build.log"
  rm -f "$scratch/cat/vectors.npy"
  index="$scratch/cuda.silica"; queries="$scratch/cat/queries.npy"; filters="$scratch/cat/filters.jsonl"
fi
"$silica" inspect "$index" > "$out/inspect.txt" 2>&1 || true

for np in $nprobes; do
  npflag=""; [ "$np" != default ] && npflag="--nprobe $np"
  tag="np$np"
  # Executor alone, same index, queries, filters and nprobe: serial calls of B = 256 (and 16).
  el "executor $tag"
  # shellcheck disable=SC2086
  "$silica" search --backend "$backend" --index "$index" --queries "$queries" --filters "$filters" --k "$k" $npflag --out "$out/res-$tag.jsonl" > /dev/null 2> "$out/exec-$tag.err"
  python3 -c "import json,sys; [print(json.dumps({'qid': r['qid'], 'ids': r['rows'], 'scores': r['scores']})) for r in map(json.loads, open(sys.argv[1]))]" "$out/res-$tag.jsonl" > "$out/gt-$tag.jsonl"
  for b in 256 16; do
    # shellcheck disable=SC2086
    "$silica" eval --backend "$backend" --index "$index" --queries "$queries" --filters "$filters" --ground-truth "$out/gt-$tag.jsonl" --k "$k" $npflag --batch $b --json > "$out/exec-$tag-b$b.json" 2>> "$out/exec-$tag.err"
    python3 -c "import json,sys; print(f'executor $tag B=$b: {json.load(open(sys.argv[1]))[\"qps\"]:.0f} QPS')" "$out/exec-$tag-b$b.json" 2>/dev/null || tail -2 "$out/exec-$tag.err"
  done
  rm -f "$out/res-$tag.jsonl" "$out/gt-$tag.jsonl"

  for w in $workers_list; do
    log="$out/serve-$tag-w$w.log"
    # shellcheck disable=SC2086
    "$silica" serve --index "$index" --addr 127.0.0.1:$port --backend "$backend" --workers "$w" \
      --threads "$serve_threads" --max-queue 65536 --no-verify ${SERVE_FLAGS:-} > "$log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do grep -q listening "$log" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
    if ! grep -q listening "$log"; then echo "server did not start:"; tail -5 "$log"; kill $pid 2>/dev/null; continue; fi
    el "serve $tag workers $w"
    runs=""
    for c in $conns; do for body in $bodies; do runs="$runs $c:$body"; done; done
    [ "$open_rate" != 0 ] && runs="$runs open:binary"
    for run in $runs; do
      c=${run%%:*}; body=${run#*:}; extra=""; label="$tag-w$w-c$c-$body"
      if [ "$c" = open ]; then c=1024; extra="--mode open --rate $open_rate"; label="$tag-w$w-open$open_rate-$body"; fi
      # shellcheck disable=SC2086
      "$silica" load --url "http://127.0.0.1:$port" --queries "$queries" --filters "$filters" --k "$k" $npflag \
        --connections "$c" --duration "$secs" --warmup "$warmup" --body "$body" --threads "$load_threads" $extra ${LOAD_FLAGS:-} \
        --out "$out/load-$label.json" > /dev/null 2> "$out/load-$label.err" || echo "load $label failed: $(tail -1 "$out/load-$label.err")"
      curl -s "http://127.0.0.1:$port/metrics" > "$out/metrics-$label.txt" 2>/dev/null || true
      python3 -c "import json,sys; r=json.load(open(sys.argv[1])); l=r['latency_ms']; print(f\"$label: {r['qps']:.0f} QPS p50 {l['p50']:.2f} p99 {l['p99']:.2f} ms errors {r['errors']} batch {r['mean_batch_queries']}\")" "$out/load-$label.json" 2>/dev/null || true
    done
    kill $pid; wait $pid 2>/dev/null || true
  done
  python3 scripts/plot-serve.py -o "$out/serve-curve-$tag.png" --title "silica serve --backend $backend, $(basename "$index"), nprobe $np, filtered mix" $out/load-$tag-*.json > /dev/null 2>&1 || echo "plot $tag failed"
done
[ -n "$scratch" ] && rm -rf "$scratch"

python3 - "$out" <<'PY' | tee "$out/summary.txt"
import glob, json, os, re, sys
out = sys.argv[1]
execs = {}
for p in glob.glob(f"{out}/exec-*-b*.json"):
    m = re.match(r"exec-(np\w+)-b(\d+)\.json", os.path.basename(p))
    try:
        execs[(m.group(1), int(m.group(2)))] = json.load(open(p))["qps"]
    except Exception:
        pass
runs = []
for p in glob.glob(f"{out}/load-*.json"):
    r = json.load(open(p))
    r["label"] = os.path.basename(p)[5:-5]
    runs.append(r)
key = lambda r: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", r["label"])]
runs.sort(key=key)
json.dump({"executor_qps": {f"{t}-b{b}": q for (t, b), q in execs.items()}, "runs": runs}, open(f"{out}/summary.json", "w"), indent=1)
for (t, b), q in sorted(execs.items()):
    print(f"executor {t} B={b}: {q:.0f} QPS")
print(f"{'run':30} {'QPS':>8} {'p50':>7} {'p99':>7} {'p999':>7} {'batch':>6} {'/exec256':>8}  errors")
for r in runs:
    l, tag = r["latency_ms"], r["label"].split("-")[0]
    ex = execs.get((tag, 256))
    ratio = f"{r['qps'] / ex:8.2f}" if ex else f"{'':8}"
    mb = r.get("mean_batch_queries") or 0
    print(f"{r['label']:30} {r['qps']:8.0f} {l['p50']:7.2f} {l['p99']:7.2f} {l['p999']:7.2f} {mb:6.1f} {ratio}  {r['errors']}")
PY
el "done"
