#!/usr/bin/env bash
# Run one fuzz target for a while, gently: one job, lowest priority.
#   fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
# Build first (see README.md). The corpus grows in fuzz/corpus/TARGET (not
# committed); fuzz/seeds/ is read as a second, read-only corpus.
set -euo pipefail
cd "$(dirname "$0")"
t=${1:?target}
secs=${2:-300}
shift $(( $# > 1 ? 2 : 1 ))
case $t in
  mime | smime) seeds=seeds/messages ;;
  *) seeds=seeds/$t ;;
esac
bin=target/x86_64-unknown-linux-gnu/release/$t
mkdir -p "corpus/$t" "artifacts/$t"
exec nice -n 19 "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" "$@" \
  "corpus/$t" "$seeds"
