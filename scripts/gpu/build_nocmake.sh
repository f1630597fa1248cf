#!/usr/bin/env bash
# Builds liblive2diff.so and the native test programs WITHOUT CMake (nvcc + g++ directly), for a
# GPU machine that has the CUDA toolkit but no cmake. It takes the sources the way
# cuda/CMakeLists.txt does (the same globs: src/**/*.cpp except the CUDA folder and cuda_absent.cpp,
# plus src/backends/cuda/**/*.cu|*.cpp), so a new source file needs no edit here.
#
#   bash scripts/gpu/build_nocmake.sh BUILD_DIR [ARCH]      # ARCH: 90 (default), 89, ... or "off" (CPU only)
#
# Env: JOBS (default nproc), NVCC (default /usr/local/cuda/bin/nvcc if present, else nvcc).
# Output in BUILD_DIR: liblive2diff.so, test_abi_c, test_philox, test_device_guard, test_cuda_ops and
# any other cuda/tests/test_cuda_*.cu (the op tests of other kernels: built as host C++).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:?usage: build_nocmake.sh BUILD_DIR [ARCH|off]}
ARCH=${2:-90}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
NVCC=${NVCC:-$( [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc || echo nvcc)}
CXX=${CXX:-g++}
CC=${CC:-gcc}
mkdir -p "$BUILD/obj"
BUILD=$(cd "$BUILD" && pwd)
cd "$ROOT/cuda"

CXXFLAGS=(-std=c++17 -O3 -march=native -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter -Iinclude -Isrc -pthread)
mapfile -t CPP < <(find src -name '*.cpp' | grep -Ev '^src/backends/(cuda/|cuda_absent\.cpp$)' | sort)
if [ "$ARCH" = off ]; then
  CU=()
  CPP+=(src/backends/cuda_absent.cpp)
else
  mapfile -t CU < <(find src/backends/cuda \( -name '*.cu' -o -name '*.cpp' \) | sort)
  CXXFLAGS+=(-DL2D_WITH_CUDA=1 -I"$(dirname "$(dirname "$(command -v "$NVCC")")")/include")
fi
NVFLAGS=(-std=c++17 -O3 -Iinclude -Isrc -DL2D_WITH_CUDA=1 --expt-relaxed-constexpr -lineinfo
  -gencode "arch=compute_$ARCH,code=sm_$ARCH" -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Wno-unused-parameter)

# One compile job per line: "<compiler> <source> <object>", run JOBS at a time.
obj() { echo "$BUILD/obj/$(echo "$1" | tr '/' '_').o"; }
compile_one() {
  local kind=$1 src=$2 out=$3
  # Crude incremental rebuild: an object newer than its source AND than every header is kept (a header
  # change rebuilds everything: a stale object compiled against an old class layout would crash).
  if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$HEADER_STAMP" ]; then return 0; fi
  if [ "$kind" = cu ]; then "$NVCC" "${NVFLAGS[@]}" -c "$src" -o "$out"; else "$CXX" "${CXXFLAGS[@]}" -c "$src" -o "$out"; fi
}
HEADER_STAMP=$BUILD/headers.stamp
touch -d "@$(find src include \( -name '*.h' -o -name '*.cuh' \) -printf '%T@\n' | sort -n | tail -1)" "$HEADER_STAMP"
export -f compile_one
export NVCC CXX HEADER_STAMP
NVFLAGS_S=$(printf '%q ' "${NVFLAGS[@]}")
CXXFLAGS_S=$(printf '%q ' "${CXXFLAGS[@]}")
OBJS=()
{
  for s in "${CPP[@]}"; do echo "cpp $s $(obj "$s")"; OBJS+=("$(obj "$s")"); done
  for s in "${CU[@]}"; do
    case $s in *.cu) echo "cu $s $(obj "$s")" ;; *) echo "cpp $s $(obj "$s")" ;; esac
  done
} >"$BUILD/jobs.txt"
for s in "${CU[@]}"; do OBJS+=("$(obj "$s")"); done
# Arrays do not cross into xargs' shells: pass the flags as strings and re-split them there.
xargs -P "$JOBS" -L 1 bash -c 'eval "NVFLAGS=($1) CXXFLAGS=($2)"; compile_one "$3" "$4" "$5"' _ "$NVFLAGS_S" "$CXXFLAGS_S" \
  <"$BUILD/jobs.txt"

LIBS=(-pthread -ldl -lrt)
if [ "$ARCH" != off ]; then
  CUDA_HOME=$(dirname "$(dirname "$(command -v "$NVCC")")")
  LIBS=(-L"$CUDA_HOME/lib64" -L"$CUDA_HOME/targets/x86_64-linux/lib" -lcudart_static "${LIBS[@]}")
fi
"$CXX" -shared -o "$BUILD/liblive2diff.so" "${OBJS[@]}" "${LIBS[@]}"

# Test programs (host code; rpath so they find the library next to them).
RPATH=(-Wl,-rpath,"$BUILD" -L"$BUILD" -llive2diff)
"$CC" -std=c99 -Wall -Iinclude tests/test_abi.c -o "$BUILD/test_abi_c" "${RPATH[@]}"
"$CXX" -std=c++17 -O2 -Iinclude -Isrc tests/test_philox.cpp -o "$BUILD/test_philox"
# (the same sources as its CMake target)
"$CXX" -std=c++17 -O2 -Iinclude -Isrc -DL2D_SRC_DIR="\"$ROOT/cuda/src\"" tests/test_device_guard.cpp src/core/tensor.cpp \
  src/core/host_tensor.cpp src/core/backend.cpp src/core/frame_fit.cpp -pthread -o "$BUILD/test_device_guard"
# The CPU replays of kernel index formulas (as their CMake targets).
for t in test_gemm_tc_layout test_norm_tokens_tile; do
  [ -e "tests/$t.cpp" ] && "$CXX" -std=c++17 -O2 -Iinclude -Isrc "tests/$t.cpp" -o "$BUILD/$t"
done
# Absolute source paths, as CMake passes them: test_cuda_dense finds dense_shapes.txt next to its __FILE__.
for t in tests/test_cuda_*.cu; do
  [ -e "$t" ] || continue
  "$CXX" -std=c++17 -O2 -Iinclude -Itests -x c++ "$ROOT/cuda/$t" -x none -o "$BUILD/$(basename "$t" .cu)" "${RPATH[@]}" \
    -pthread
done
echo "build_nocmake: $BUILD/liblive2diff.so ($([ "$ARCH" = off ] && echo CPU only || echo "CUDA sm_$ARCH")), $(ls "$BUILD" | grep -c '^test_') test programs"
