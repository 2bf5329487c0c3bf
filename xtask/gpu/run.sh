#!/usr/bin/env bash
# The GPU pack's one call (`cargo xtask gpu-pack` lays out the folder this runs from). On a GPU
# machine with no Rust toolchain and no network: unpack the carried Vulkan loaders if the system
# has none, check that nvidia-smi answers and that wgpu reaches the card (not a software
# rasterizer), run the packed parity tests on wgpu, then benchmark ViT-B/16 training and
# inference, ViT-S/16 and R26+ViT-S/32 inference, ours on wgpu against PyTorch + timm on CUDA,
# and write the table to $OUT/gpu.md (raw lines in gpu.jsonl, this log in gpu.log).
#
#   bash .gpu/run.sh                      # on the GPU machine, from the carried tree
#   VIT_GPU_DRY_RUN=1 bash .gpu/run.sh    # anywhere: few steps, small batches, PyTorch on the
#                                         # CPU, a software Vulkan device accepted
#
# VIT_GPU_BUDGET_S (default 450) bounds the whole script: every part has a timeout inside it.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$HERE/out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1
DRY="${VIT_GPU_DRY_RUN:-0}"
PY="${VIT_GPU_PYTHON:-python3}"
BUDGET="${VIT_GPU_BUDGET_S:-450}"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
say() { printf '[%4ds] %s\n' $(($(date +%s) - START)) "$*"; }
left() { echo $((DEADLINE - $(date +%s))); }
# Mesa and wgpu probe Wayland; without a runtime folder every process says so, at length.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"
    export XDG_RUNTIME_DIR
fi
TESTS="$OUT/tests.txt"
: >"$TESTS"

say "vit GPU pack: $(head -n 1 "$HERE/MANIFEST.txt" 2>/dev/null); dry run: $DRY; budget ${BUDGET}s"
if command -v cargo >/dev/null 2>&1 && [ "$DRY" = 1 ]; then
    say "FAILED: cargo is on PATH; the dry run must show the pack needs no toolchain"
    exit 1
fi

# 1. Vulkan's loader and GL dispatch libraries: the system's if it has them, else the carried
# Debian packages unpacked into / (the device machine's recipe). A dry run unpacks them into a
# scratch folder instead, to show they are whole, and keeps the system's.
if [ "$DRY" = 1 ]; then
    scratch="$(mktemp -d)"
    for f in "$HERE"/debs/*.deb; do dpkg -x "$f" "$scratch" || { say "FAILED: cannot unpack $f"; exit 1; }; done
    for lib in libvulkan.so.1 libEGL.so.1 libGLdispatch.so.0 libGLX.so.0; do
        find "$scratch" -name "$lib*" | grep -q . || { say "FAILED: no $lib in the carried .debs"; exit 1; }
    done
    say "carried .debs unpack and hold the loaders ($(ls "$HERE"/debs | wc -l) packages)"
    rm -rf "$scratch"
fi
if ldconfig -p | grep -q 'libvulkan.so.1 '; then
    say "Vulkan loader: the system's"
else
    say "Vulkan loader: unpacking the carried .debs into /"
    for f in "$HERE"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi

# 2. The executables: one solid xz archive (they share most of their code), unpacked with
# python3's tarfile (no xz binary needed).
say "unpacking the executables ..."
"$PY" -c 'import sys, tarfile; t = tarfile.open(sys.argv[1], "r:xz"); t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))' \
    "$HERE/bin.tar.xz" "$HERE" || { say "FAILED: cannot unpack $HERE/bin.tar.xz"; exit 1; }
say "executables: $(cd "$HERE/bin" && ls | tr '\n' ' ')"

# 3. The GPU, as the driver sees it.
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
if [ -n "$GPU" ]; then
    say "nvidia-smi: $GPU"
elif [ "$DRY" = 1 ]; then
    GPU="none (dry run)"
    say "nvidia-smi: none (a dry run goes on)"
else
    say "FAILED: nvidia-smi does not answer"
    exit 1
fi

# 4. What wgpu reaches, and what `--device auto` picks. NVIDIA's Vulkan driver may sit outside
# the loader's search path; then point the loader at it and ask again.
devices() { timeout 60 "$HERE/bin/vit-train" devices; }
auto() { timeout 60 "$HERE/bin/vit-train" devices --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["auto"])'; }
devices
AUTO="$(auto)"
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ "$AUTO" = cpu ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$nv_icd" ]; then
    say "no card through Vulkan; pointing the loader at $nv_icd"
    export VK_DRIVER_FILES="$nv_icd"
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    devices
    AUTO="$(auto)"
fi
if [ "$AUTO" = cpu ] && [ "$DRY" != 1 ]; then
    say "FAILED: wgpu reaches no card (auto picks the CPU); the table would measure a rasterizer"
    echo "- FAILED: wgpu reaches no card" >>"$TESTS"
else
    say "--device auto picks: $AUTO"
fi

# 5. The parity tests on wgpu: inference against timm's fixtures, training against Flex.
run_test() { # name, timeout, executable, filter
    say "test: $1 ..."
    if VIT_FIXTURES_DIR="$HERE/fixtures" VIT_TEST_DEVICES=wgpu timeout "$2" "$HERE/bin/$3" "$4" --test-threads 1; then
        echo "- passed: $1" >>"$TESTS"
    else
        echo "- FAILED (exit $?): $1" >>"$TESTS"
    fi
}
test_timeout=$(( $(left) / 4 ))
run_test "inference parity with timm on wgpu (tests/gpu.rs)" "$test_timeout" test-gpu parity_fixtures_on_listed_devices
run_test "training parity with Flex on wgpu (tests/backends.rs)" "$test_timeout" test-backends listed_devices
say "tests done"

# 6. The benchmark, in what time is left (each run has a step count and a timeout).
say "benchmark: $(left)s left"
"$PY" "$HERE/bench.py" --pack "$HERE" --out "$OUT" --gpu "$GPU" --tests "$TESTS" \
    --deadline "$DEADLINE" $([ "$DRY" = 1 ] && echo --dry-run)
status=$?
say "done (exit $status): $OUT/gpu.md"
exit $status
