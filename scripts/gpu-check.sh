#!/usr/bin/env bash
# The GPU check of live2diff: ONE script for the lent GPU machine (see scripts/gpu/README.md).
#
#   bash scripts/gpu-check.sh                    # on the GPU machine (device tool, carry [".gpu"])
#   GPU_CHECK_DRY=1 bash scripts/gpu-check.sh    # here, without a GPU: every step that needs none
#
# Needs .gpu/ filled by scripts/gpu/prepare.sh (Deno binary, offline DENO_DIR, packed golden set).
# Steps, each under its own timeout and all under one deadline (GPU_CHECK_BUDGET seconds, default 450):
#   1. unpack Deno             2. CMake build (CUDA ON, sm_90, Release, -j16); without cmake
#                                 scripts/gpu/build_nocmake.sh (nvcc + g++ directly)
#   3. test_device_guard, scripts/gpu/vendor_conformance.sh (if present), then every op test built:
#      test_cuda_ops (every CUDA op vs the CPU backend, fp32 and fp16, at the networks' shapes) and any
#      other cuda/build-gpucheck/test_cuda_* (dense, attention). Exit 77 = no GPU / CUDA could not start:
#      FAILED. A failing op test is rerun with L2D_CUDA_SYNC=1 (step <name>-sync) to name the faulting op.
#      In the background meanwhile: compute-sanitizer memcheck (whole op test), racecheck + synccheck
#      (attention, norm, reduce kernels, small shapes); GPU_CHECK_SANITIZE=0 skips them.
#   4. regenerate the golden model files (Philox) into a temporary golden root
#   5. golden cases on CUDA: the small ones fp32 then fp16, then unet_full_shapes fp16 then fp32, the
#      pipeline with L2D_ATTENTION=tc, L2D_NORM=fast and L2D_FUSE=none; scripts/gpu/stream_graphs.ts
#      (Stream.push with L2D_CUDA_GRAPHS=1 and 0, fp16), and with graphs on under compute-sanitizer
#      memcheck; then the fused ops' op tests per kernel path and with L2D_FUSE=none
#   6. deno task bench --device cuda (the synthetic sd15 engine is built in the background meanwhile)
#   7. the bench once per switch setting (L2D_CUDA_GRAPHS=0/1, L2D_FUSE=none/all, L2D_KERNELS=simple/auto,
#      L2D_ATTENTION=simple/tc), short runs; ratios per pair in bench_switches.json
# Logs and summaries go to $OUT (at most 8 files come back: gpu-check.log, summary.txt, summary.json,
# bench.json, bench_switches.json, logs.tar.gz). The script always exits 0: the summary says what passed.
# Dry run: golden on the CPU (fp32, a few cases), bench on the CPU (tiny engine), no sd15 engine,
# test_cuda_ops exits 77 "no GPU" (a FAILED step, as it must be); the network is made unreachable so
# offline use is checked too.
# Knobs (e.g. for a focused rerun): GPU_CHECK_BUDGET (s), GPU_CHECK_CASES (small cases, space separated),
# GPU_CHECK_FULL_CASES (default unet_full_shapes), GPU_CHECK_PRECISIONS (default "fp32 fp16"),
# GPU_CHECK_BENCH=0 (no bench, no sd15 engine), GPU_CHECK_BENCH_ARGS, GPU_CHECK_BENCH_RESERVE (s),
# GPU_CHECK_SANITIZE=0 (no compute-sanitizer), GPU_CHECK_NO_CMAKE=1 (use the no-CMake build),
# GPU_CHECK_BUILD (build folder), GPU_CHECK_ARCH (default 90; "off" = CPU-only build, for dry runs).

set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DRY=${GPU_CHECK_DRY:-0}
BUDGET=${GPU_CHECK_BUDGET:-450}
START=$(date +%s)
DEADLINE=$((START + BUDGET))
if [ -z "${OUT:-}" ]; then OUT=/tmp/l2d-gpu-check-out; rm -rf "$OUT"; fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/l2d-gpu-check.XXXXXX)
LOGS=$WORK/logs
STEPS=$WORK/steps.tsv
mkdir -p "$LOGS" "$WORK/bin"
: >"$STEPS"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  PRECISIONS=${GPU_CHECK_PRECISIONS:-fp32}
  SMALL_CASES=${GPU_CHECK_CASES-taesd unet_warmup pipeline}
  FULL_CASES=${GPU_CHECK_FULL_CASES-}
  BUILD=$ROOT/cuda/build-gpucheck-dry
  # No network here either: any download attempt fails instead of silently succeeding.
  # (NPM_CONFIG_REGISTRY is left alone: the npm cache is keyed by the registry host.)
  export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 \
    https_proxy=http://127.0.0.1:9
else
  DEVICE=cuda
  PRECISIONS=${GPU_CHECK_PRECISIONS:-fp32 fp16}
  SMALL_CASES=${GPU_CHECK_CASES-clip_text taesd midas unet_warmup unet_stream pipeline engine_build}
  FULL_CASES=${GPU_CHECK_FULL_CASES-unet_full_shapes}
  BUILD=$ROOT/cuda/build-gpucheck
fi
BUILD=${GPU_CHECK_BUILD:-$BUILD}  # e.g. a folder already built (a focused rerun, a quick dry run)
ARCH=${GPU_CHECK_ARCH:-90}        # "off": CPU-only build (dry runs of the script itself)
BENCH=${GPU_CHECK_BENCH:-1}
if [ "$DRY" = 1 ]; then DEFAULT_BENCH_ARGS="--sizes 64x64 --steps 2 --frames 4 --stage-iters 2"; else
  DEFAULT_BENCH_ARGS="--frames 30 --max-seconds 15 --stage-iters 10"
fi
BENCH_ARGS=${GPU_CHECK_BENCH_ARGS:-$DEFAULT_BENCH_ARGS}
# seconds kept for the bench (and its switch pairs, step 7) while golden cases run
PAIR_RESERVE=${GPU_CHECK_PAIR_RESERVE:-140}
if [ "$BENCH" = 1 ]; then BENCH_RESERVE=${GPU_CHECK_BENCH_RESERVE:-$((130 + PAIR_RESERVE))}; else BENCH_RESERVE=0; fi
export PATH=/usr/local/cuda/bin:$WORK/bin:$PATH
export LIVE2DIFF_LIB=$BUILD/liblive2diff.so
export DENO_DIR=$WORK/deno_dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1
export LIVE2DIFF_CACHE_DIR=$WORK/cache
export ROOT WORK BUILD GOLDEN=$WORK/golden
# --no-lock: resolve only what the scripts import (the cache holds npm:yaml, not all of deno.lock).
DENO_RUN=(deno run -A --cached-only --no-lock)

now() { date +%s; }
log() { echo "[gpu-check $(($(now) - START))s] $*"; }

# step NAME CAP RESERVE CMD...: runs CMD with stdout -> $LOGS/NAME.out, stderr -> $LOGS/NAME.err under
# timeout min(CAP, time left - RESERVE); records "NAME rc seconds" in $STEPS (rc 124 = timed out,
# "skip" = no time left). Returns the command's status.
step() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local left=$((DEADLINE - $(now) - reserve))
  local t=$((cap < left ? cap : left))
  if ((t < 5)); then
    printf '%s\tskip\t0\n' "$name" >>"$STEPS"
    log "$name: SKIPPED (no time left in the ${BUDGET}s budget)"
    return 99
  fi
  log "$name: start (timeout ${t}s)"
  export STEP_TIMEOUT=$t
  local s e rc
  s=$(date +%s.%N)
  # Shell functions (exported with export -f) run in a child bash: timeout only executes programs.
  if declare -F "$1" >/dev/null; then set -- bash -c '"$@"' _ "$@"; fi
  timeout -k 10 "$t" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err"
  rc=$?
  e=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\n' "$name" "$rc" "$secs" >>"$STEPS"
  if ((rc == 0)); then log "$name: ok (${secs}s)"; else
    log "$name: FAILED rc=$rc (${secs}s)$( ((rc == 124)) && echo ' TIMED OUT')"
    tail -n 5 "$LOGS/$name.err" "$LOGS/$name.out" 2>/dev/null | sed 's/^/    /'
  fi
  return $rc
}

finish() {
  log "summary"
  if command -v deno >/dev/null; then
    deno run -A --cached-only --no-lock scripts/gpu/summary.ts --work "$WORK" --out "$OUT" --dry "$DRY" \
      --budget "$BUDGET" --elapsed "$(($(now) - START))" || cat "$STEPS"
  else
    echo "deno is not available: raw step table"
    cat "$STEPS"
  fi
  tar -C "$WORK" -czf "$OUT/logs.tar.gz" logs steps.tsv 2>/dev/null
  log "done in $(($(now) - START))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
}

main() {
  # ---- 0. environment ----
  {
    echo "date: $(date -Is)  dry: $DRY  device: $DEVICE  budget: ${BUDGET}s"
    uname -a
    nproc
    free -g | head -2
    df -h "$ROOT" /tmp | tail -n +1
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,temperature.gpu --format=csv 2>&1
    nvcc --version 2>&1 | tail -2
    cmake --version 2>&1 | head -1
    tree=$(git ls-files -co --exclude-standard -z 2>/dev/null | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    echo "travelled: ${tree:-?} bytes of tree + $(du -sb .gpu 2>/dev/null | cut -f1) bytes of .gpu"
  } >"$LOGS/env.log" 2>&1
  head -20 "$LOGS/env.log"

  # ---- 1. Deno ----
  unpack_deno() {
    # A failed unpack must not leave an empty "deno" first on PATH (it would "succeed" silently).
    if ! { if command -v xz >/dev/null; then xz -dc .gpu/deno.xz >"$WORK/bin/deno"; else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        .gpu/deno.xz "$WORK/bin/deno"
    fi; }; then
      rm -f "$WORK/bin/deno"
      return 1
    fi
    chmod +x "$WORK/bin/deno"
    cp -r .gpu/deno_dir "$DENO_DIR" && deno --version
  }
  export -f unpack_deno
  if [ ! -s .gpu/deno.xz ] || [ ! -d .gpu/deno_dir ] || [ ! -f .gpu/golden/recipe.json ]; then
    log ".gpu/ is incomplete: run scripts/gpu/prepare.sh here and carry .gpu"
  fi
  step deno 60 0 unpack_deno
  if ! command -v deno >/dev/null || ! deno --version >/dev/null 2>&1; then
    log "no usable deno: only the native build and test_cuda_ops can run"
  fi

  # ---- 2. build (CMake, or nvcc + g++ directly when there is no cmake) ----
  build() {
    if command -v cmake >/dev/null && [ "${GPU_CHECK_NO_CMAKE:-0}" != 1 ]; then
      local cuda=(-DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DL2D_CUDA=ON)
      [ "$ARCH" = off ] && cuda=(-DL2D_CUDA=OFF)
      cmake -S cuda -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${cuda[@]}" &&
        cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 16)"
    else
      echo "no cmake (or GPU_CHECK_NO_CMAKE=1): scripts/gpu/build_nocmake.sh"
      bash scripts/gpu/build_nocmake.sh "$BUILD" "$ARCH"
    fi
  }
  export -f build
  export ARCH
  step build 240 0 build

  # ---- 3. native tests: device guard, vendor-header conformance, every CUDA op test built ----
  # cuDNN (Python env) and cuBLASLt (/usr/local/cuda/lib64) on the loader path, so every later step
  # (op tests, golden, bench) can take the vendor path of L2D_KERNELS=auto.
  eval "$(bash scripts/gpu/dense_check.sh --print-env)"
  [ -x "$BUILD/test_device_guard" ] && step test_device_guard 20 0 "$BUILD/test_device_guard"
  if [ -f scripts/gpu/vendor_conformance.sh ]; then
    step vendor_conformance 60 0 bash scripts/gpu/vendor_conformance.sh "$BUILD"
  fi
  # test_cuda_ops first, then any other op test (test_cuda_dense, test_cuda_attention, ...). Exit 77
  # = CUDA could not start (no GPU, no/old driver): a FAILED step whose log says why.
  OP_TESTS=$( (ls "$BUILD"/test_cuda_ops 2>/dev/null; ls "$BUILD"/test_cuda_* 2>/dev/null | grep -v -e '/test_cuda_ops$' -e '/test_cuda_dense$') |
    while read -r t; do [ -x "$t" ] && basename "$t"; done)
  [ -n "$OP_TESTS" ] || printf 'test_cuda_ops\tmissing\t0\n' >>"$STEPS"
  for t in $OP_TESTS; do
    step "$t" 90 0 "$BUILD/$t"
    rc=$?
    tail -n 1 "$LOGS/$t.out" 2>/dev/null | sed 's/^/    /'
    ((rc == 77)) && log "$t: NO GPU / CUDA could not start (FAILED): $(grep -m1 'no GPU' "$LOGS/$t.out")"
    # A failure: run it again with a sync after every op, so the first fault names its op.
    if ((rc == 1)); then step "$t-sync" 60 0 env L2D_CUDA_SYNC=1 "$BUILD/$t"; fi
  done
  # The fast norm kernels (L2D_NORM=fast, off by default until this passes): every norm shape of the
  # networks against the CPU oracle, then compute-sanitizer racecheck + memcheck at the small shapes.
  if [ -x "$BUILD/test_cuda_norm" ]; then
    step test_cuda_norm-fast 90 0 env L2D_NORM=fast "$BUILD/test_cuda_norm"
    (($? == 1)) && step test_cuda_norm-fast-sync 60 0 env L2D_NORM=fast L2D_CUDA_SYNC=1 "$BUILD/test_cuda_norm"
    tail -n 1 "$LOGS/test_cuda_norm-fast.out" 2>/dev/null | sed 's/^/    /'
    if [ "${GPU_CHECK_SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
      for tool in racecheck memcheck; do
        step "sanitize_${tool}_norm_fast" 40 "$BENCH_RESERVE" env L2D_NORM=fast compute-sanitizer --error-exitcode 86 \
          --print-limit 30 --tool "$tool" "$BUILD/test_cuda_norm" --small
      done
    fi
  fi
  # The dense kernels per path (issue 14): conformance of our cuBLASLt/cuDNN declarations with the
  # real headers, the GEMM lane formulas, then test_cuda_dense once per L2D_KERNELS path (the simple
  # kernels are covered by test_cuda_ops at the networks' shapes).
  if [ -x "$BUILD/test_cuda_dense" ]; then
    step dense 240 "$BENCH_RESERVE" env BUILD="$BUILD" DENSE_LOGS="$LOGS/dense" DENSE_CAP=100 \
      DENSE_PATHS="${GPU_CHECK_DENSE_PATHS:-own vendor}" bash scripts/gpu/dense_check.sh
    sed 's/^/    /' "$LOGS/dense.out" 2>/dev/null
  fi

  # ---- background: compute-sanitizer (memcheck on the whole op test; racecheck and synccheck on the
  # attention, reduce and norm kernels at small shapes), alongside the golden cases ----
  SAN_PID=
  if [ "${GPU_CHECK_SANITIZE:-1}" = 1 ] && [ -x "$BUILD/test_cuda_ops" ] && command -v compute-sanitizer >/dev/null; then
    SMALL_KERNELS=(--small --filter attention --filter norm --filter minmax)
    (
      SAN=(compute-sanitizer --error-exitcode 86 --print-limit 30)
      step sanitize_memcheck 150 "$BENCH_RESERVE" "${SAN[@]}" --tool memcheck "$BUILD/test_cuda_ops"
      step sanitize_racecheck 60 "$BENCH_RESERVE" "${SAN[@]}" --tool racecheck "$BUILD/test_cuda_ops" "${SMALL_KERNELS[@]}"
      step sanitize_synccheck 40 "$BENCH_RESERVE" "${SAN[@]}" --tool synccheck "$BUILD/test_cuda_ops" "${SMALL_KERNELS[@]}"
      # The fused ops' kernels (packed-QKV attention, conv epilogue, layout GEMM) at small shapes.
      [ -x "$BUILD/test_cuda_attention" ] && step sanitize_memcheck_attn_packed 60 "$BENCH_RESERVE" "${SAN[@]}" \
        --tool memcheck "$BUILD/test_cuda_attention" causal/clip
      [ -x "$BUILD/test_cuda_attention" ] && step sanitize_memcheck_temporal_packed 60 "$BENCH_RESERVE" "${SAN[@]}" \
        --tool memcheck "$BUILD/test_cuda_attention" packed_temporal/l4
      [ -x "$BUILD/test_cuda_conv_fused" ] && step sanitize_memcheck_conv_fused 60 "$BENCH_RESERVE" "${SAN[@]}" \
        --tool memcheck "$BUILD/test_cuda_conv_fused" --small
      [ -x "$BUILD/test_cuda_layout" ] && step sanitize_memcheck_layout 60 "$BENCH_RESERVE" "${SAN[@]}" \
        --tool memcheck "$BUILD/test_cuda_layout" --small
    ) &
    SAN_PID=$!
    log "compute-sanitizer: memcheck, racecheck, synccheck in the background"
  else
    printf 'sanitize\tmissing\t0\n' >>"$STEPS"
    log "compute-sanitizer: not run (GPU_CHECK_SANITIZE=${GPU_CHECK_SANITIZE:-1}, test_cuda_ops or compute-sanitizer missing)"
  fi

  # ---- background: the synthetic sd15 engine for the bench (CPU + disk work) ----
  SD15_PID=
  if [ "$DRY" != 1 ] && [ "$BENCH" = 1 ] && [ -f "$LIVE2DIFF_LIB" ] && command -v deno >/dev/null; then
    log "sd15-engine: building models/engines/synthetic-sd15-sm_90.l2de in the background"
    (step sd15_engine 300 0 "${DENO_RUN[@]}" scripts/make_synthetic_engine.ts --preset sd15 --target sm_90 --quiet) &
    SD15_PID=$!
  fi

  # ---- 4. golden models ----
  regen() {
    cp -r .gpu/golden "$GOLDEN" && deno run -A --cached-only --no-lock scripts/gpu/golden_pack.ts unpack --dir "$GOLDEN"
  }
  export -f regen
  step golden_models 60 0 regen
  export L2D_GOLDEN_DIR=$GOLDEN

  # ---- 5. golden cases ----
  for p in $PRECISIONS; do
    for c in $SMALL_CASES; do
      step "golden-$p-$c" 60 "$BENCH_RESERVE" "${DENO_RUN[@]}" scripts/golden.ts --device "$DEVICE" --precision "$p" \
        "$GOLDEN/cases/$c"
    done
  done
  # The full-size UNet: fp16 (the deployment precision) first when both are asked for.
  for p in $(echo "$PRECISIONS" | tr ' ' '\n' | sort); do
    for c in $FULL_CASES; do
      step "golden-$p-$c" 150 "$BENCH_RESERVE" "${DENO_RUN[@]}" scripts/golden.ts --device "$DEVICE" --precision "$p" \
        "$GOLDEN/cases/$c"
    done
  done

  # The pipeline once more with the tensor-core attention (L2D_ATTENTION=tc, off by default until
  # this passes on a GPU).
  if [[ " $SMALL_CASES " == *" pipeline "* && " $PRECISIONS " == *" fp16 "* ]]; then
    step "golden-fp16-pipeline-attn_tc" 60 "$BENCH_RESERVE" env L2D_ATTENTION=tc "${DENO_RUN[@]}" scripts/golden.ts \
      --device "$DEVICE" --precision fp16 "$GOLDEN/cases/pipeline"
  fi

  # The pipeline once more with the fast norm kernels (L2D_NORM=fast).
  if [[ " $SMALL_CASES " == *" pipeline "* && " $PRECISIONS " == *" fp16 "* ]]; then
    step "golden-fp16-pipeline-norm_fast" 60 "$BENCH_RESERVE" env L2D_NORM=fast "${DENO_RUN[@]}" scripts/golden.ts \
      --device "$DEVICE" --precision fp16 "$GOLDEN/cases/pipeline"
  fi

  # The pipeline once more with every fusion off (L2D_FUSE=none, fusions.h; the default is all): when
  # the default run above fails and this one passes, a fused op is wrong (the op tests name it).
  if [[ " $SMALL_CASES " == *" pipeline "* && " $PRECISIONS " == *" fp16 "* ]]; then
    step "golden-fp16-pipeline-fuse_none" 60 "$BENCH_RESERVE" env L2D_FUSE=none "${DENO_RUN[@]}" scripts/golden.ts \
      --device "$DEVICE" --precision fp16 "$GOLDEN/cases/pipeline"
  fi

  # The stream hot path (Stream.push) with the per-frame step as one CUDA graph and eager
  # (L2D_CUDA_GRAPHS=1 / 0, fp16; issue 15), then graphs on under compute-sanitizer memcheck.
  if [ "$DRY" != 1 ] && [[ " $PRECISIONS " == *" fp16 "* ]]; then
    step stream_graphs-fp16 90 "$BENCH_RESERVE" "${DENO_RUN[@]}" scripts/gpu/stream_graphs.ts --precision fp16
    if [ "${GPU_CHECK_SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
      step stream_graphs-memcheck 120 "$BENCH_RESERVE" compute-sanitizer --error-exitcode 86 --print-limit 30 \
        --tool memcheck "${DENO_RUN[@]}" scripts/gpu/stream_graphs.ts --precision fp16 --modes 1
    fi
  fi

  # The fused ops (L2D_FUSE, fusions.h) on the paths the op-test loop above did not take: there each
  # test ran with the defaults (fp16 auto prefers cuBLASLt/cuDNN where they load, so the own-kernel
  # epilogues run under L2D_KERNELS=own; the simple kernels run fp16 only under L2D_KERNELS=simple),
  # then once with every fusion off (the composition), which must pass too.
  # fused_paths TEST "KERNEL PATHS" [ARGS...]
  fused_paths() {
    local t=$1 paths=$2
    shift 2
    [ -x "$BUILD/$t" ] || return 0
    for k in $paths; do step "$t-$k" 60 "$BENCH_RESERVE" env L2D_KERNELS="$k" "$BUILD/$t" "$@"; done
    step "$t-unfused" 60 "$BENCH_RESERVE" env L2D_FUSE=none "$BUILD/$t" "$@"
  }
  fused_paths test_cuda_layout "own simple tune"
  fused_paths test_cuda_conv_fused "own simple tune"
  fused_paths test_cuda_dense "tune" --filter linear_geglu  # own and vendor: the dense step above
  if [ -x "$BUILD/test_cuda_norm" ]; then
    step test_cuda_norm-tokens-unfused 60 "$BENCH_RESERVE" env L2D_FUSE=none "$BUILD/test_cuda_norm" --filter gnt/
    step test_cuda_norm-fast-tokens-unfused 60 "$BENCH_RESERVE" env L2D_NORM=fast L2D_FUSE=none "$BUILD/test_cuda_norm" \
      --filter gnt/
  fi

  # ---- 6. bench ----
  if [ -n "$SAN_PID" ]; then
    log "waiting for compute-sanitizer"
    wait "$SAN_PID"
  fi
  if [ -n "$SD15_PID" ]; then
    log "waiting for the sd15 engine build"
    wait "$SD15_PID"
  fi
  if [ "$BENCH" != 1 ]; then
    log "bench: off (GPU_CHECK_BENCH=$BENCH)"
  else
    # The bench keeps 20 s of its step's timeout in hand (--budget), so it always prints its JSON.
    run_bench() {
      local dev=cuda
      [ "$DRY" = 1 ] && dev=cpu
      # shellcheck disable=SC2086 # BENCH_ARGS is a list of options
      local budget=$((STEP_TIMEOUT > 40 ? STEP_TIMEOUT - 20 : STEP_TIMEOUT / 2))
      deno run -A --cached-only --no-lock scripts/bench.ts --device "$dev" --budget "$budget" $BENCH_ARGS
    }
    export -f run_bench
    export DRY BENCH_ARGS
    step bench 200 "$PAIR_RESERVE" run_bench
  fi
  tail -n 1 "$LOGS/bench.out" >"$OUT/bench.json" 2>/dev/null

  # ---- 7. bench switch pairs: before / after of each switch from this one run (issue 15) ----
  # One short bench per setting (512x512 T=2; dry: 64x64), each summary kept as
  # $LOGS/bench-switches/NAME=VALUE.json (in logs.tar.gz), then ONE file $OUT/bench_switches.json with
  # the ratios after / before per pair (scripts/bench/switch_pairs.ts) and both runs.
  # GPU_CHECK_BENCH_PAIRS="" skips them; GPU_CHECK_PAIR_ARGS replaces the bench options.
  if [ "$DRY" = 1 ]; then
    PAIRS=${GPU_CHECK_BENCH_PAIRS-"L2D_KERNELS=simple,L2D_KERNELS=auto"}
    PAIR_ARGS=${GPU_CHECK_PAIR_ARGS:-"--device cpu --quick --concurrency 0"}
  else
    PAIRS=${GPU_CHECK_BENCH_PAIRS-"L2D_CUDA_GRAPHS=0,L2D_CUDA_GRAPHS=1 L2D_FUSE=none,L2D_FUSE=all L2D_KERNELS=simple,L2D_KERNELS=auto L2D_ATTENTION=simple,L2D_ATTENTION=tc"}
    PAIR_ARGS=${GPU_CHECK_PAIR_ARGS:-"--device cuda --sizes 512x512 --steps 2 --frames 8 --warmup 1 --no-stages --no-layers --profile-frames 3 --concurrency 0 --max-seconds 5"}
  fi
  if [ "$BENCH" = 1 ] && [ -n "$PAIRS" ] && command -v deno >/dev/null; then
    mkdir -p "$LOGS/bench-switches"
    for pair in $PAIRS; do
      for setting in "${pair%%,*}" "${pair#*,}"; do
        # shellcheck disable=SC2086 # PAIR_ARGS is a list of options
        step "bench-$setting" 40 0 env "$setting" "${DENO_RUN[@]}" scripts/bench.ts --budget 30 $PAIR_ARGS
        tail -n 1 "$LOGS/bench-$setting.out" >"$LOGS/bench-switches/$setting.json" 2>/dev/null
      done
    done
    # shellcheck disable=SC2086 # PAIRS is a list of pairs
    step bench-switches 20 0 "${DENO_RUN[@]}" scripts/bench/switch_pairs.ts --dir "$LOGS/bench-switches" \
      --out "$OUT/bench_switches.json" $PAIRS
    sed 's/^/    /' "$LOGS/bench-switches.err" 2>/dev/null | head -60
  fi

  finish
}

main 2>&1 | tee "$OUT/gpu-check.log"
exit 0
