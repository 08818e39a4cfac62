#!/usr/bin/env bash
# Device call 6 (stop 22, issue 11): freshness at 5M after fresh3 (write-path phases, prepared
# batches off the writer), short: SECS=15 per rate (0 / 2,000 / 10,000 items/s), one tarball.
set -uo pipefail
B=/tmp/b; mkdir -p $B; tar xJf .bin/h3/bins.tar.xz -C $B; chmod +x $B/*
OUTER=${OUT:-/tmp/out}
SILICA=$B/silica N=5000000 SECS=15 OUT=$OUTER/r timeout 255 bash scripts/fresh-h200-call.sh 2>&1 | tail -30
tar czf $OUTER/call6.tgz -C $OUTER/r . && ls -la $OUTER/call6.tgz
