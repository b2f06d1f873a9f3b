#!/usr/bin/env bash
# GPU check of train@<model>: the real LoRA and QLoRA paths, 50 steps each, on a model with
# Llama-3-8B's architecture and random weights (scripts/gpu_check.py); prints tokens/s and
# peak GPU memory, and checks what only a GPU shows (the attention kernel really used; the
# FSDP adapter save on 2 GPUs when there are 2).
#
#   scripts/gpu_check.sh pins [WHEELS]    # print what `run` installs, install nothing
#   scripts/gpu_check.sh fetch [WHEELS]   # where the internet is: the wheels `run` needs, for
#                                         # the GPU machine's Python (PY_VERSION, default
#                                         # 3.11) and torch (TORCH_VERSION, default the lock's)
#   scripts/gpu_check.sh run [WHEELS]     # on the GPU machine: install, then check
#   scripts/gpu_check.sh dry [WHEELS]     # anywhere, with what is installed: the 8B model on
#                                         # `meta`, sizes only; the checks' plan
#
# `run` installs the project's locked versions (requirements.lock) of what training and
# evaluation import, WITH their dependencies, under constraints that hold every other locked
# version and the machine's own torch (`torch==` its installed version): pip can neither
# replace that CUDA build nor leave a dependency out (scripts/gpu_pins.py). From WHEELS when
# that folder exists (no index), else from the index. Into the user site outside a venv.
#
# WHEELS defaults to ./wheels. Extra arguments after WHEELS go to gpu_check.py
# (e.g. --steps 20 --modes qlora). Figures also land in $OUT/gpu_check.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:-run}"
wheels="${2:-wheels}"
shift $(( $# > 2 ? 2 : $# ))
PY="${PYTHON:-python3}"
plan=$(mktemp -d)
trap 'rm -rf "$plan"' EXIT
"$PY" scripts/gpu_pins.py requirements >"$plan/requirements.txt"

install_cmd() {  # the pip command of `run`, one argument a line
  printf '%s\n' "$PY" -m pip install -r "$plan/requirements.txt" -c "$plan/constraints.txt"
  if [ -d "$wheels" ]; then printf '%s\n' --no-index --find-links "$wheels"; fi
  if "$PY" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then echo --user; fi
}

case "$action" in
  pins)
    "$PY" scripts/gpu_pins.py constraints >"$plan/constraints.txt"
    echo "--- requirements (with their dependencies)"
    cat "$plan/requirements.txt"
    echo "--- constraints"
    cat "$plan/constraints.txt"
    echo "--- install command"
    install_cmd | tr '\n' ' '
    echo
    ;;
  fetch)
    mkdir -p "$wheels"
    torch_version="${TORCH_VERSION:-$(grep -i '^torch==' requirements.lock | cut -d= -f3)}"
    # The closure of the requirements at the locked versions, resolved here from metadata
    # only (nothing installed), less torch and its CUDA libraries, which the GPU machine has.
    "$PY" scripts/gpu_pins.py constraints --torch "${torch_version%%+*}" >"$plan/constraints.txt"
    "$PY" -m pip install -q --dry-run --ignore-installed --report "$plan/report.json" \
      -r "$plan/requirements.txt" -c "$plan/constraints.txt"
    mapfile -t closure < <("$PY" - "$plan/report.json" <<'PYEOF'
import json, re, sys
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if not re.fullmatch(r"torch|triton|nvidia-.*-cu\d+|nvidia-(nccl|nvtx|nvjitlink|cufile|nvshmem).*|cuda-.*", name.lower()):
        print(f"{name}=={version}")
PYEOF
    )
    # Wheels where there are wheels; a source-only package (antlr4-python3-runtime, via
    # dvclive's dvc) comes as an sdist, with setuptools to build it offline.
    "$PY" -m pip download --prefer-binary --python-version "${PY_VERSION:-3.11}" \
      --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_28_x86_64 --no-deps -d "$wheels" "${closure[@]}" \
      "$(grep -i '^setuptools==' requirements.lock || echo setuptools)" wheel
    echo "${#closure[@]} wheels in $wheels: carry them to the GPU machine with the repo"
    ;;
  run|dry)
    if [ "$action" = run ]; then
      "$PY" scripts/gpu_pins.py constraints >"$plan/constraints.txt"
      mapfile -t cmd < <(install_cmd)
      "${cmd[@]}"
      "$PY" - "$plan/requirements.txt" <<'PYEOF'
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    name, want = line.strip().split("==")
    assert version(name) == want, f"{name}: {version(name)} installed, {want} locked"
PYEOF
    fi
    export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    out=()
    [ -n "${OUT:-}" ] && out=(--out "$OUT/gpu_check.json")
    if [ "$action" = dry ]; then
      "$PY" scripts/gpu_check.py --dry-run "$@"
    else
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
      "$PY" scripts/gpu_check.py "${out[@]}" "$@"
    fi
    ;;
  *)
    echo "usage: scripts/gpu_check.sh pins|fetch|run|dry [WHEELS] [gpu_check.py args]" >&2
    exit 2
    ;;
esac
