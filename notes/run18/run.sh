#!/usr/bin/env bash
# Device call 3: wgpu peer suite A/B, filter_words grid (q, j) vs (j, q); per-kernel profile of the Bloom row.
set -uo pipefail
B=.bin/p3; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig >/dev/null
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
chmod +x $B/silica $B/silica-before
for round in 1 2; do
for bin in silica-before silica; do
  echo "== $bin (round $round)"
  timeout 150 $B/$bin bench --backend wgpu --suite peer --time-budget 2 --json > $OUT/peer-$bin-$round.json 2>$OUT/err-$bin.txt
  python3 -c "
import json,sys
r=json.load(open('$OUT/peer-$bin-$round.json'))
for x in r['rows']: print(f\"  {x['name'][:40]:40s} p50 {x['silica_ms_p50']:.3f} p99 {x['silica_ms_p99']:.3f}\")
"
done; done
echo "== profile, Bloom-like workload (all lists in id order are what the suite uses; workload mode uses random probes)"
SILICA_WGPU_PROFILE=1 timeout 100 $B/silica bench --backend wgpu --n 20000000 --dim 128 --nlist 4096 --random-probes --k 2048 --batch 16 --nprobe 4096 --filter-pass 0.1 --filter-terms 3:3 --time-budget 1 --json 2>&1 >/dev/null | grep -A6 "wgpu profile"
