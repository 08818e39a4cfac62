#!/usr/bin/env bash
# Issue 16, CUDA side of the typed device interface (branch cscan) on the H200: results bit for
# bit and speed unchanged. What changed: cuda/scan.cu's six scan entries are instantiations of
# one template scan_kernel<Pipe, SAMPLE>; every launch takes a KernelId and a typed argument
# struct (crates/cuda/src/args.rs, kernels.rs); Cuda::scan executes a ScanPlan (scan_plan.rs).
# Prebuilt binaries only (no Rust there). Build here, in two trees:
#   AFTER  (cscan, or main after the merge):
#     cargo test --release --no-run -p silica -p silica-cuda && cargo build --release && cargo build --release --example cuda_peer
#     mkdir -p .bin/after && cp target/release/silica target/release/examples/cuda_peer .bin/after/
#     for t in cuda_golden conformance silica_cuda; do cp "$(ls -t target/release/deps/$t-* | grep -v '\.d$' | head -1)" .bin/after/$t; done
#   BEFORE (main before the merge, e.g. bd4e279): cargo build --release && cargo build --release --example cuda_peer
#     mkdir -p .bin/before && cp target/release/silica target/release/examples/cuda_peer .bin/before/
#   strip .bin/*/* (optional), carry .bin, run from the checkout root:
#     bash scripts/cscan-h200.sh                 # PARTS="tests resources peer e2e" (all)
#     PARTS="tests resources" bash scripts/cscan-h200.sh; PARTS=peer ...; PARTS=e2e ...   (one device call each)
# Prints one PASS/FAIL line per check and the tables; logs under $OUT/cscan/ (OUT default /tmp).
#  1. tests: silica_cuda (unit tests: KernelId table vs the sources, argument layouts under NVRTC,
#     ScanPlan, every cuda/*.cu compiles cleanly), cuda_golden (every Tuning path:
#     generic / fast / stream, fused or not, PDL or not, forced fallback, tile words 1..4, vs the
#     CPU reference bit for bit), conformance cuda:: (SILICA_REQUIRE_BACKENDS=cuda: a skip fails).
#  2. resources: cuda_peer --quick prints (registers, local bytes, static shared bytes) of every
#     kernel as the driver compiled it; the before/after tables must be identical for every kernel
#     (scan_main_stream / scan_sample_stream / *_fast / scan_main / scan_sample above all). Under
#     NVRTC 12.9 here the stream and generic kernels' PTX is the old one's up to register names
#     and every kernel's registers / local / shared are equal (the fast pair: 5 fewer integer
#     instructions, same registers); any difference on the H200's driver is a finding. The quick
#     peer timings follow (cuda_peer's own table).
#  3. peer: silica bench --backend cuda --suite peer, before, after, before, after (ROUNDS=2):
#     p50 per row and after/before. Unchanged means every row within noise (a few %; B=16/64 has
#     varied 2.91-3.06x across calls): a consistent >3% slowdown on any scan row is a regression.
#  4. e2e: silica bench --backend cuda --suite e2e --n $E2E_N --batch 256,16 --nprobe 32, before
#     then after: QPS and recall per filter class; recall must be equal (same bits), QPS within noise.
# Environment: OUT, BEFORE (.bin/before), AFTER (.bin/after), PARTS, ROUNDS [2], TIME_BUDGET [3],
# E2E_N [1000000], TO (timeout per bench run, s) [240].
set -uo pipefail
top="${OUT:-/tmp}"; out="$top/cscan"; mkdir -p "$out"
before="${BEFORE:-.bin/before}"; after="${AFTER:-.bin/after}"
parts="${PARTS:-tests resources peer e2e}"; rounds="${ROUNDS:-2}"; tb="${TIME_BUDGET:-3}"; e2e_n="${E2E_N:-1000000}"; to="${TO:-240}"
has() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
chmod +x "$before"/* "$after"/* 2>/dev/null || true
# cudarc loads libnvrtc.so by that name; the host may only have a versioned file.
NV=/tmp/nvlib; mkdir -p $NV
lib=$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null; timeout 30 find /usr /opt -name 'libnvrtc.so*' 2>/dev/null) | grep -v builtins | head -1)
[ -n "$lib" ] && ln -sf "$lib" $NV/libnvrtc.so && export LD_LIBRARY_PATH=$NV:$(dirname "$lib"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export SILICA_REQUIRE_BACKENDS=cuda
{ date -u; echo "libnvrtc: ${lib:-none}"; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv 2>&1; ls -l "$before" "$after" 2>&1; } | tee "$out/env.txt"
fails=0
check() { # name cmd... : PASS when the test binary exits 0, reports ok and skips nothing
  local name=$1; shift
  "$@" > "$out/$name.txt" 2>&1; local rc=$?
  if [ $rc -eq 0 ] && grep -q "test result: ok" "$out/$name.txt" && ! grep -q "FAILED\|panicked\|SKIP" "$out/$name.txt"; then
    echo "PASS $name: $(grep -h 'test result' "$out/$name.txt" | awk '{p+=$4; f+=$6} END {print p " passed, " f " failed"}')"
  else
    echo "FAIL $name (rc=$rc)"; grep -h "panicked\|FAILED\|SKIP\|left:\|right:" "$out/$name.txt" | head -20; fails=$((fails + 1))
  fi
}
if has tests; then
  check silica_cuda "$after/silica_cuda" --test-threads=2
  check cuda_golden "$after/cuda_golden" --test-threads=2
  check conformance_cuda "$after/conformance" cuda:: --test-threads=2
fi
if has resources; then
  for v in before after; do
    d=$before; [ $v = after ] && d=$after
    timeout "$to" "$d/cuda_peer" --quick > "$out/peer-quick-$v.txt" 2>&1 || echo "cuda_peer --quick ($v) failed: $(tail -3 "$out/peer-quick-$v.txt")"
  done
  # The kernel table: "  kernel NAME  R regs, L B local, S B static smem" (cuda_peer, stderr).
  grep "^  kernel " "$out/peer-quick-before.txt" > "$out/kernels-before.txt"; grep "^  kernel " "$out/peer-quick-after.txt" > "$out/kernels-after.txt"
  if [ -s "$out/kernels-after.txt" ] && diff "$out/kernels-before.txt" "$out/kernels-after.txt" > "$out/kernels.diff"; then
    echo "PASS resources: registers / local / shared identical for $(wc -l < "$out/kernels-after.txt") kernels"
  else
    echo "DIFF resources (expected none; see $out/kernels.diff):"; head -30 "$out/kernels.diff"
  fi
  echo "--- cuda_peer --quick, after (before in $out/peer-quick-before.txt):"; tail -25 "$out/peer-quick-after.txt"
fi
table() { # json files... -> p50 per row
  python3 - "$@" <<'EOF'
import json, sys
runs = [(p, json.load(open(p))) for p in sys.argv[1:]]
names = [x["name"] for x in runs[0][1]["rows"]]
print("| row | " + " | ".join(p.split("/")[-1].replace(".json", "") for p, _ in runs) + " | after/before (mean) |")
print("| --- |" + " ---: |" * (len(runs) + 1))
for n in names:
    v = {p: next((x["silica_ms_p50"] for x in r["rows"] if x["name"] == n), None) for p, r in runs}
    b = [t for p, t in v.items() if "before" in p and t]; a = [t for p, t in v.items() if "after" in p and t]
    ratio = f"{(sum(a) / len(a)) / (sum(b) / len(b)):.3f}" if a and b else "n/a"
    print(f"| {n} | " + " | ".join("-" if t is None else f"{t:.3f}" for t in v.values()) + f" | {ratio} |")
EOF
}
if has peer; then
  files=()
  for r in $(seq 1 "$rounds"); do
    for v in before after; do
      d=$before; [ $v = after ] && d=$after
      f="$out/peer-$v-$r.json"
      if timeout "$to" "$d/silica" bench --backend cuda --suite peer --time-budget "$tb" --json > "$f" 2> "$out/peer-$v-$r.log"; then files+=("$f")
      else echo "FAIL peer $v round $r: $(tail -3 "$out/peer-$v-$r.log")"; fails=$((fails + 1)); fi
    done
  done
  [ ${#files[@]} -gt 0 ] && table "${files[@]}" | tee "$out/peer.md"
fi
if has e2e; then
  for v in before after; do
    d=$before; [ $v = after ] && d=$after
    timeout "$to" "$d/silica" bench --backend cuda --suite e2e --n "$e2e_n" --batch 256,16 --nprobe 32 --time-budget 1 --json > "$out/e2e-$v.json" 2> "$out/e2e-$v.log" \
      || { echo "FAIL e2e $v: $(tail -3 "$out/e2e-$v.log")"; fails=$((fails + 1)); }
  done
  python3 - "$out/e2e-before.json" "$out/e2e-after.json" <<'EOF' | tee "$out/e2e.md"
import json, sys
def load(p):
    try: return {(c["class"], c["batch"], c["candidate_budget"]): c for c in json.load(open(p))["classes"]}
    except Exception as e: print(f"{p}: {e}"); return {}
b, a = load(sys.argv[1]), load(sys.argv[2])
print("| class | B | QPS before | QPS after | after/before | recall before | recall after | device scan ms before | after |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for k, x in b.items():
    y = a.get(k)
    if y is None: print(f"| {k[0]} | {k[1]} | {x['qps']:.0f} | - | | {x['recall']:.4f} | - | | |"); continue
    print(f"| {k[0]} | {k[1]} | {x['qps']:.0f} | {y['qps']:.0f} | {y['qps'] / x['qps']:.3f} | {x['recall']:.4f} | {y['recall']:.4f} | "
          f"{x['device_breakdown_ms']['scan']:.3f} | {y['device_breakdown_ms']['scan']:.3f} |")
same = bool(b) and all(k in a and a[k]["recall"] == x["recall"] and a[k]["violations"] == x["violations"] for k, x in b.items())
print("PASS e2e recall and violations identical" if same else "FAIL e2e recall or violations differ (same seed: they must not)")
EOF
fi
echo "failures: $fails (logs in $out)"
exit $((fails > 0))
