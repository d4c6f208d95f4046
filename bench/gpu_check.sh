#!/usr/bin/env bash
# The GPU proof of the fast path in one command (bench/gpu_check.py says what it measures):
#
#   bash bench/gpu_check.sh                  # one H100/H200, under 10 minutes; table on stdout, JSON in
#                                            # bench/results/gpu_check/gpu_check.json
#   bash bench/gpu_check.sh --dry-run        # the same code at tiny sizes on the CPU (tests/test_gpu_check.py)
#   bash bench/gpu_check.sh --parts ad       # a subset, e.g. to rerun parts after a failure
#   FSDP_CHECK=0 bash bench/gpu_check.sh     # without part (e), the FSDP check (bench/fsdp_check.py)
#
# Safe on a fresh machine: when there is no .venv it makes one. On a GPU image whose python3 already has a CUDA
# torch, that is `python3 -m venv --system-site-packages .venv` + `pip install -e .`, which keeps the image's torch
# (pip's own PIP_NO_INDEX / PIP_FIND_LINKS point it at carried wheels on a machine without a registry); elsewhere
# `make setup`. It installs fastvideo-kernel into the venv only when pip finds a wheel for this Python whose
# requirements the venv already meets (the kernel pins its torch: installing it must not replace ours), with einops,
# which the kernel imports but does not declare (fastvideo-kernel 0.3.5: without it the package does not import,
# and the kernel rows would say "not installed"). Whatever
# happens to the kernel is passed on and shown in the kernel rows ("not installed (reason)"); the flex and torch
# backends run regardless. Nothing here needs the Hub: every model is built from its config with random weights.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then
        dry_run=1
    fi
done
export HF_HUB_OFFLINE=1
# 0.3.x is the API src/fastvideo_hf/vsa/attention.py calls (tile-shaped block_size, variable tile sizes)
kernel_spec="${KERNEL_SPEC:-fastvideo-kernel>=0.3}"
# what `import fastvideo_kernel` needs that fastvideo-kernel does not declare (its vmoba.py imports einops)
kernel_undeclared_deps=(einops)

if [[ ! -x .venv/bin/python ]]; then
    if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        python3 -m venv --system-site-packages .venv
        .venv/bin/python -m pip install --quiet -e .
    else
        make setup
    fi
fi
python=.venv/bin/python

# The last line of a command's output, for a one-line reason.
last_line() {
    printf '%s\n' "$1" | grep -v '^\s*$' | tail -n 1 | cut -c1-200
}

kernel_status() {
    if [[ $dry_run == 1 ]]; then
        echo "not installed (dry run)"
        return
    fi
    if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "not installed (no CUDA device for this venv's torch)"
        return
    fi
    if "$python" -c 'import fastvideo_kernel' 2>/dev/null; then
        echo "installed (already in .venv)"
        return
    fi
    local report output torch_version
    report=$(mktemp)
    # Resolve first: the wheel must exist for this Python and must not bring another torch.
    if ! output=$("$python" -m pip install --quiet --dry-run --only-binary=:all: --report "$report" "$kernel_spec" \
        "${kernel_undeclared_deps[@]}" 2>&1); then
        rm -f "$report"
        echo "not installed (no wheel of $kernel_spec for this Python/platform: $(last_line "$output"))"
        return
    fi
    torch_version=$("$python" -c 'import torch; print(torch.__version__)')
    local wanted_torch
    wanted_torch=$("$python" -c '
import json, sys
report = json.load(open(sys.argv[1]))
print(" ".join(item["metadata"]["version"] for item in report["install"] if item["metadata"]["name"] == "torch"))
' "$report")
    rm -f "$report"
    if [[ -n "$wanted_torch" ]]; then
        echo "not installed (its wheel needs torch $wanted_torch; this venv has torch $torch_version)"
        return
    fi
    if ! output=$("$python" -m pip install --quiet --only-binary=:all: "$kernel_spec" "${kernel_undeclared_deps[@]}" 2>&1); then
        echo "not installed (pip failed: $(last_line "$output"))"
        return
    fi
    if ! output=$("$python" -c 'import fastvideo_kernel' 2>&1); then
        "$python" -m pip uninstall --quiet --yes fastvideo-kernel >/dev/null 2>&1 || true
        echo "not installed (installed but does not import: $(last_line "$output"))"
        return
    fi
    echo "installed ($("$python" -m pip show fastvideo-kernel 2>/dev/null | grep '^Version' | cut -d' ' -f2))"
}

status=$(kernel_status)
echo "fastvideo-kernel: $status" >&2
"$python" bench/gpu_check.py --kernel_status "$status" "$@"

# (e) FSDP: Accelerate runs it only on GPUs, so the shipped fsdp.yaml is proven here (bench/fsdp_check.py: equal
# to the plain run, resumed exactly from a sharded checkpoint, outputs loaded in diffusers; about 3 minutes of
# tiny-model runs). Not in the dry run, where Accelerate would run DDP anyway; FSDP_CHECK=0 skips it.
if [[ $dry_run == 0 && "${FSDP_CHECK:-1}" != 0 ]]; then
    "$python" bench/fsdp_check.py --output bench/results/gpu_check/fsdp_check.json
fi
