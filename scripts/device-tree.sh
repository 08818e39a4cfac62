#!/usr/bin/env bash
# The device tool sends this checkout's tracked files, at most 64 MiB; the bundled Debian
# corpus (data/debian, ~69 MB) would exceed that. `slim` drops data/debian from the git
# index (files stay on disk, ignored via .git/info/exclude) so it does not travel;
# `full` restores it. A pre-commit hook refuses commits made while slim.
#   scripts/device-tree.sh slim   # before a device run
#   scripts/device-tree.sh full   # right after it
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
ex="$(git rev-parse --git-common-dir)/info/exclude"
case "${1:-}" in
  slim)
    git rm -q --cached -r data/debian >/dev/null 2>&1 || true
    grep -qx '/data/debian/' "$ex" || echo '/data/debian/' >> "$ex" ;;
  full)
    sed -i '\#^/data/debian/$#d' "$ex"
    git reset -q -- data/debian ;;
  *) echo "usage: $0 slim|full" >&2; exit 2 ;;
esac
