#!/usr/bin/env bash
# fuzz_native.sh <seconds> [target]: builds the native libFuzzer targets (cuda/fuzz, ASan + UBSan)
# into cuda/build-fuzz and fuzzes each for its share of <seconds> (all of it with one target:
# fuzz_config = JSON parser + the config layer of every model kind, fuzz_abi = the C ABI).
#
# Every run first replays the saved findings in cuda/fuzz/regressions/<target>/ (each must now
# pass), then fuzzes from the working corpus (cuda/build-fuzz/corpus/<target>, kept between runs)
# plus the seeds: cuda/fuzz/seeds/<target>/, the golden configs (../shared/golden or
# $L2D_GOLDEN_DIR) and engines/presets/*.json. A new crash, leak, timeout or out-of-memory input is
# saved under cuda/fuzz/regressions/<target>/ (commit it with the fix). Prints per target the
# inputs tried, the findings and the peak RSS. Exit 0: no finding; 1: findings; 2: no clang/libFuzzer.
set -euo pipefail

usage() { echo "usage: bash scripts/fuzz_native.sh <seconds> [fuzz_config|fuzz_abi]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 && "$1" =~ ^[0-9]+$ && "$1" -ge 1 ]] || usage
seconds=$1
root=$(cd "$(dirname "$0")/.." && pwd)
targets=(fuzz_config fuzz_abi)
if [[ $# -eq 2 ]]; then
  [[ " ${targets[*]} " == *" $2 "* ]] || usage
  targets=("$2")
fi
per_target=$((seconds / ${#targets[@]}))
((per_target >= 1)) || per_target=1

# A clang whose runtime has libFuzzer (Debian: clang-16 + libclang-rt-16-dev).
cxx=""
for c in ${CXX_FUZZ:-} clang++-16 clang++-15 clang++-14 clang++; do
  command -v "$c" >/dev/null 2>&1 || continue
  if echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$c" -x c++ -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1; then
    cxx=$c
    break
  fi
done
if [[ -z "$cxx" ]]; then
  echo "fuzz_native: no clang with libFuzzer found (Debian: apt-get install clang-16 libclang-rt-16-dev)" >&2
  exit 2
fi

build="$root/cuda/build-fuzz"
cmake -S "$root/cuda/fuzz" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$build" -j "${FUZZ_JOBS:-2}" --target "${targets[@]}" >/dev/null

golden="${L2D_GOLDEN_DIR:-$root/../shared/golden}"
# Parser and allocator limits: a config that makes the core allocate > 1 GiB at once, or an input
# running > 10 s, is a finding like a crash.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=8192)

status=0
for t in "${targets[@]}"; do
  bin="$build/$t"
  regressions="$root/cuda/fuzz/regressions/$t"
  corpus="$build/corpus/$t"
  seeds="$build/seeds/$t"
  mkdir -p "$regressions" "$corpus" "$seeds"

  # 1. Saved findings must all pass now.
  mapfile -t saved < <(find "$regressions" -type f ! -name '.*' | sort)
  if ((${#saved[@]} > 0)); then
    if ! "$bin" "${limits[@]}" "${saved[@]}" >"$build/$t.replay.log" 2>&1; then
      echo "$t: a saved regression input fails again (see $build/$t.replay.log)" >&2
      status=1
      continue
    fi
  fi

  # 2. Seeds (copied, so the fuzzer never writes into the repository or the golden set).
  cp -f "$root/cuda/fuzz/seeds/$t/"* "$seeds/" 2>/dev/null || true
  if [[ -d "$golden" ]]; then
    find "$golden" -name '*.json' -size -64k -exec cp -f {} "$seeds/" \; 2>/dev/null || true
  fi
  cp -f "$root/engines/presets/"*.json "$seeds/" 2>/dev/null || true

  # 3. Fuzz; findings land in the regressions folder.
  log="$build/$t.log"
  set +e
  "$bin" "${limits[@]}" -max_total_time="$per_target" -print_final_stats=1 \
    -artifact_prefix="$regressions/" "$corpus" "$seeds" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  found=$(grep -cE '^(==[0-9]+==ERROR|SUMMARY: (Address|Undefined|Leak)|.*ERROR: libFuzzer)' "$log" || true)
  echo "$t: ${per_target}s, $execs inputs, peak RSS ${rss} MB, $((rc == 0 ? 0 : 1)) finding(s)"
  if ((rc != 0)); then
    status=1
    echo "$t: finding (exit $rc, $found error line(s)); input saved in $regressions/, log: $log" >&2
    grep -m 20 -E 'ERROR|SUMMARY|#[0-9]+ 0x' "$log" >&2 || true
  fi
done
exit $status
