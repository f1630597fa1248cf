#!/usr/bin/env bash
# Issue 14's checks of the dense kernels on the GPU machine, as one step of scripts/gpu-check.sh:
#
#   eval "$(bash scripts/gpu/dense_check.sh --print-env)"   # once, before golden/bench: lets dlopen find
#                                                           # libcudnn.so.9 (Python env) and libcublasLt
#   BUILD=cuda/build-gpucheck bash scripts/gpu/dense_check.sh
#
# 1. vendor_conformance: compiles cuda/tests/vendor_conformance.cpp against the REAL cublasLt.h and
#    cudnn*.h (our declarations are static_asserted against them: a compile error is the failure), runs it;
# 2. test_gemm_tc_layout (the own GEMM's lane formulas, CPU);
# 3. test_cuda_dense once per kernel path (L2D_KERNELS in DENSE_PATHS, default "own vendor simple"),
#    each under DENSE_CAP seconds (default 150): every conv/linear shape of a real frame vs the CPU.
# One line per step on stdout ("dense: NAME ok|FAILED (rc) seconds"), full logs in DENSE_LOGS (default
# $BUILD/dense-logs). Exit status: 0 when every step passed, else 1.
set -u

cudnn_dir() {
  python3 - <<'EOF' 2>/dev/null
import os
import nvidia.cudnn as m
paths = list(getattr(m, "__path__", [])) or [os.path.dirname(m.__file__)]
print(paths[0])
EOF
}

CUDNN_DIR=${CUDNN_DIR:-$(cudnn_dir)}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
if [ "${1:-}" = "--print-env" ]; then
  libs="$CUDA_HOME/lib64"
  [ -n "$CUDNN_DIR" ] && libs="$CUDNN_DIR/lib:$libs"
  echo "export LD_LIBRARY_PATH=\"$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
  exit 0
fi

BUILD=${BUILD:-cuda/build}
CAP=${DENSE_CAP:-150}
PATHS=${DENSE_PATHS:-"own vendor simple"}
LOGS=${DENSE_LOGS:-$BUILD/dense-logs}
mkdir -p "$LOGS"
failed=0

run_step() { # NAME CAP CMD...
  local name=$1 cap=$2 start rc
  shift 2
  start=$(date +%s)
  timeout "$cap" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    echo "dense: $name ok $(($(date +%s) - start)) s"
  else
    failed=1
    echo "dense: $name FAILED (rc $rc) $(($(date +%s) - start)) s: $(tail -n 1 "$LOGS/$name.log")"
  fi
}

conformance() {
  if [ -z "$CUDNN_DIR" ] || [ ! -d "$CUDNN_DIR/include" ]; then
    echo "cuDNN headers not found (python3 -c 'import nvidia.cudnn' failed or has no include/)"
    return 2
  fi
  g++ -std=c++17 -Wall -Wextra -Wno-deprecated-declarations -I"$CUDA_HOME/include" -I"$CUDNN_DIR/include" -Icuda/src \
    cuda/tests/vendor_conformance.cpp -o "$LOGS/vendor_conformance" && "$LOGS/vendor_conformance"
}

export -f conformance
export CUDNN_DIR CUDA_HOME LOGS
run_step vendor_conformance 120 bash -c conformance
run_step test_gemm_tc_layout 30 "$BUILD/test_gemm_tc_layout"
for k in $PATHS; do
  run_step "test_cuda_dense-$k" "$CAP" env L2D_KERNELS="$k" "$BUILD/test_cuda_dense"
  sed -n 's/^test_cuda_dense: kernels /    kernels /p' "$LOGS/test_cuda_dense-$k.log" | head -n 1
done
exit $failed
