#!/usr/bin/env bash
# GPU check of train@<model>: the real LoRA and QLoRA paths, 50 steps each, on a model with
# Llama-3-8B's architecture and random weights (scripts/gpu_check.py); prints tokens/s and
# peak GPU memory. For a CUDA machine without internet that lacks trl, peft or bitsandbytes:
#
#   scripts/gpu_check.sh fetch [WHEELS]   # where the internet is: wheels for the GPU
#                                         # machine's Python (set PY_VERSION, default 3.11)
#   scripts/gpu_check.sh run [WHEELS]     # on the GPU machine, wheels carried along
#   scripts/gpu_check.sh dry [WHEELS]     # anywhere: the 8B model on `meta`, sizes only
#
# WHEELS defaults to ./wheels. Extra arguments after WHEELS go to gpu_check.py
# (e.g. --steps 20 --modes qlora). Figures also land in $OUT/gpu_check.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:-run}"
wheels="${2:-wheels}"
shift $(( $# > 2 ? 2 : $# ))
PY="${PYTHON:-python3}"
# What the training path imports beyond torch and transformers (pinned as in requirements.lock).
PKGS=(trl peft bitsandbytes accelerate datasets dvclive pydantic pyyaml rich pyarrow tokenizers)

missing() {
  "$PY" - "$@" <<'PYEOF'
import importlib.util, sys
names = {"pyyaml": "yaml"}
print(" ".join(p for p in sys.argv[1:] if importlib.util.find_spec(names.get(p, p)) is None))
PYEOF
}

case "$action" in
  fetch)
    mkdir -p "$wheels"
    pins=()
    for p in "${PKGS[@]}"; do
      pin=$(grep -i "^${p}==" requirements.lock || true)
      pins+=("${pin:-$p}")
    done
    "$PY" -m pip download --only-binary=:all: --python-version "${PY_VERSION:-3.11}" \
      --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_28_x86_64 --no-deps -d "$wheels" "${pins[@]}"
    echo "wheels in $wheels: carry them to the GPU machine with the repo"
    ;;
  run|dry)
    need=$(missing "${PKGS[@]}")
    if [ -n "$need" ]; then
      if [ ! -d "$wheels" ]; then
        echo "missing: $need; no wheel folder '$wheels' (scripts/gpu_check.sh fetch)" >&2
        exit 2
      fi
      # Offline: only the carried wheels, never an index. Into a user site so the machine's
      # own torch and transformers stay as they are.
      "$PY" -m pip install --no-index --find-links "$wheels" --user --no-deps $need
      still=$(missing "${PKGS[@]}")
      [ -z "$still" ] || { echo "still missing after install: $still" >&2; exit 2; }
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
    echo "usage: scripts/gpu_check.sh fetch|run|dry [WHEELS] [gpu_check.py args]" >&2
    exit 2
    ;;
esac
