#!/usr/bin/env bash
# Device call 4 (stop 21): issue 11's freshness at 5M again (call 3 fell to 0.14x of no
# writes at 2,000 items/s, stop 20: 0.66x), with fresh segments no longer taking the posting
# route (graph::hook::Hook::postings: off for segments searched beside the main index, which
# are rebuilt at every write). Same script and settings as call 3.
set -uo pipefail
B=$PWD/.bin/h4; OUTER=${OUT:-/tmp/out}; R=$OUTER/r; mkdir -p $R
chmod +x $B/*
SILICA=$B/silica N=5000000 SECS=${SECS:-30} OUT=$R/fresh timeout 420 bash scripts/fresh-h200-call.sh > $R/fresh.out 2>&1
tail -6 $R/fresh.out
cp $R/fresh/fresh/summary.json $R/summary.json 2>/dev/null
rm -rf $R/fresh/fresh/work* 2>/dev/null
