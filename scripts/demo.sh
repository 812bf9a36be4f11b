#!/usr/bin/env bash
# make demo: crash a real Debian kernel in the lab and show what kcrash says about the dump, with no vmlinux.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-demo-out}"
K=.venv/bin/kcrash

echo "== kcrash lab crash BUG --kernel 6.12 --kaslr -o $OUT"
$K lab crash BUG --kernel 6.12 --kaslr -o "$OUT"
echo
echo "== kcrash dump info $OUT/vmcore.kdump"
$K dump info "$OUT/vmcore.kdump"
echo
echo "== kcrash report $OUT/vmcore.kdump   (no vmlinux: kallsyms, BTF and ORC from the dump itself)"
$K report "$OUT/vmcore.kdump"
$K report "$OUT/vmcore.kdump" --format html -o "$OUT/report.html"
echo
echo "== kcrash locks $OUT/vmcore.kdump   (who waits for whom: the lab module plants a lock holder and waiters)"
$K locks "$OUT/vmcore.kdump"
echo
echo "== kcrash kmem -i $OUT/vmcore.kdump; kcrash kmem $OUT/vmcore.kdump -s kcrash_test_cache"
$K kmem "$OUT/vmcore.kdump" -i
$K kmem "$OUT/vmcore.kdump" -s kcrash_test_cache
echo
echo "== kcrash oops parse $OUT/console.log"
$K oops parse "$OUT/console.log"
echo
echo "HTML report: $OUT/report.html"
