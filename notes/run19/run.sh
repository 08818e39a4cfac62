#!/usr/bin/env bash
# Device call 4: wgpu peer suite A/B/C: scan_score 1 (before), 2, 4 rows per thread (D = 128).
set -uo pipefail
B=.bin/p3; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig >/dev/null
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/silica-*
for round in 1 2; do
for bin in silica-before silica-rpt2 silica-rpt4; do
  echo "== $bin (round $round)"
  timeout 150 $B/$bin bench --backend wgpu --suite peer --time-budget 2 --json > $OUT/peer-$bin-$round.json 2>$OUT/err-$bin.txt
  python3 -c "
import json,sys
r=json.load(open('$OUT/peer-$bin-$round.json'))
for x in r['rows']: print(f\"  {x['name'][:40]:40s} p50 {x['silica_ms_p50']:.3f} p99 {x['silica_ms_p99']:.3f} {x['gbps']:.0f} GB/s\")
"
done; done
echo "== clustered recall check (rpt2)"
timeout 100 $B/silica-rpt2 bench --backend wgpu --n 1000000 --dim 128 --nlist 1024 --batch 16 --nprobe 32 --k 100 --clustered --recall-sample 16 --time-budget 1 --json | python3 -c "import json,sys; r=json.load(sys.stdin); print('recall', r['recall'], 'p50', r['latency_ms_p50'])"
