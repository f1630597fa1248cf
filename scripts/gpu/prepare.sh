#!/usr/bin/env bash
# Fills .gpu/ (git-ignored) with what scripts/gpu-check.sh needs on the GPU machine, which has no
# internet and no Deno. Run it HERE (repo root or anywhere), then carry ".gpu" in the device call.
#
#   .gpu/deno.xz        the Deno executable of this machine, xz -9 (~30 MB)
#   .gpu/deno.version   its version
#   .gpu/deno_dir/      a DENO_DIR with every npm package the scripts import (npm:yaml), for --cached-only
#   .gpu/golden/        the golden set packed by scripts/gpu/golden_pack.ts: cases/, README.md and the
#                       small model files as they are; the big model files as a Philox recipe
#                       (recipe.json + extras.safetensors), regenerated there and verified here
#
# Prints the size of what travels (tree + .gpu; the device tool's limit is 64 MiB).
# Env: L2D_GOLDEN_DIR (default ../shared/golden), XZ_THREADS (default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
GOLDEN=${L2D_GOLDEN_DIR:-$ROOT/../shared/golden}
mkdir -p .gpu
if ! git check-ignore -q .gpu/deno.xz; then
  echo "/.gpu/" >>.git/info/exclude
  echo "added /.gpu/ to .git/info/exclude"
fi

# 1. Deno binary (recompressed only when the version changed). Without deno on PATH, the one npx
#    installs (`npx -y deno@2.9.6`) is used and put on PATH for the steps below.
if ! command -v deno >/dev/null; then
  npx -y deno@2.9.6 --version >/dev/null
  NPX_DENO=$(ls -t ~/.npm/_npx/*/node_modules/@deno/linux-x64-glibc/deno 2>/dev/null | head -1)
  [ -x "$NPX_DENO" ] || { echo "prepare: cannot find a Deno executable (install it or put it on PATH)" >&2; exit 1; }
  mkdir -p /tmp/l2d-deno-bin && ln -sf "$NPX_DENO" /tmp/l2d-deno-bin/deno && export PATH=/tmp/l2d-deno-bin:$PATH
fi
DENO_BIN=$(readlink -f "$(command -v deno)")
VERSION=$(deno --version | head -1)
if [ ! -s .gpu/deno.xz ] || [ "$(cat .gpu/deno.version 2>/dev/null)" != "$VERSION" ]; then
  echo "compressing $DENO_BIN ($VERSION) ..."
  xz -9 -T"${XZ_THREADS:-2}" -c "$DENO_BIN" >.gpu/deno.xz.tmp
  mv .gpu/deno.xz.tmp .gpu/deno.xz
  echo "$VERSION" >.gpu/deno.version
fi

# 2. Offline module cache for every script the check runs. --no-lock: only the packages these scripts
#    import (npm:yaml), not every package of deno.lock (hono, playwright-core, ...); gpu-check.sh runs
#    with --no-lock too, and deno.lock is never written.
rm -rf .gpu/deno_dir
DENO_DIR=.gpu/deno_dir deno cache --no-lock scripts/golden.ts scripts/bench.ts scripts/make_synthetic_engine.ts \
  scripts/gpu/golden_pack.ts scripts/gpu/summary.ts

# 3. Packed golden set (needs the native library for Philox: built when missing or stale).
deno run -A scripts/build_native.ts --if-needed
deno run -A scripts/gpu/golden_pack.ts pack --golden "$GOLDEN" --out .gpu/golden

# 4. What travels.
TREE=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
GPU=$(du -sb .gpu | cut -f1)
echo "travels: tree $TREE bytes + .gpu $GPU bytes = $((TREE + GPU)) bytes ($(((TREE + GPU) * 100 / 67108864))% of 64 MiB)"
du -sh .gpu/* | sed 's/^/  /'
