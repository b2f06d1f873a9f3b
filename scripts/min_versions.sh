#!/usr/bin/env bash
# `make test-min`: the lower bounds that pyproject.toml declares for the HF stack, proven.
#
# A throwaway venv gets this machine's torch (2.13.0, the CPU build; a PyPI torch at its lower
# bound would be a multi-GB CUDA build), then EXACTLY the lower bounds of transformers, trl,
# peft, accelerate, datasets and lm-eval, then the rest of the project's dependencies, all
# under one constraints file so that pip can neither move torch nor lift a bound. Then the
# tests that load, train (a few real steps), save and evaluate run against those versions.
#
#   scripts/min_versions.sh            # venv in ${TMPDIR:-/tmp}/instar-min-versions, removed
#   KEEP=1 scripts/min_versions.sh     # keep the venv (rerun the tests by hand)
#   scripts/min_versions.sh --plan     # print the constraints only, install nothing
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
TORCH="${TORCH_VERSION:-2.13.0}"
VENV="${TMPDIR:-/tmp}/instar-min-versions"
HF_STACK=(transformers trl peft accelerate datasets lm-eval)

# The bounds come from pyproject.toml itself, so this proves what is declared, not a copy.
constraints() {
  "$PY" - "$TORCH" "${HF_STACK[@]}" <<'PYEOF'
import re, sys, tomllib
torch, names = sys.argv[1], sys.argv[2:]
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(f"torch=={torch}")
for name in names:
    (spec,) = [d for d in deps if re.match(rf"{re.escape(name)}\s*[><=]", d)]
    low = re.search(r">=\s*([0-9][^,;\s]*)", spec)
    if not low:
        sys.exit(f"pyproject.toml: {spec!r} declares no lower bound")
    print(f"{name}=={low.group(1)}")
PYEOF
}

if [ "${1:-}" = --plan ]; then
  constraints
  exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$VENV"' EXIT
pins="$VENV/min-constraints.txt"
constraints >"$pins"
echo "--- constraints ($pins)"
cat "$pins"
pip=("$VENV/bin/python" -m pip install -q -c "$pins")
"${pip[@]}" "torch==$TORCH"  # first, so that nothing after it can bring another torch
# `-e .` brings every other dependency at its newest allowed version; the constraints keep
# torch and the six bounds exact. `transformers serve` (the dev extra's serving deps) is not
# part of what this proves.
"${pip[@]}" -e . "pytest>=8" "pytest-timeout>=2.3"
echo "--- pip freeze (HF stack)"
"$VENV/bin/python" -m pip freeze | grep -iE '^(torch|transformers|trl|peft|accelerate|datasets|lm.eval|tokenizers|huggingface.hub|safetensors|bitsandbytes)=='
# What runs is installed exactly as constrained: a resolver that lifted a bound fails here.
"$VENV/bin/python" - "$pins" <<'PYEOF'
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    name, want = line.strip().split("==")
    have = version(name).split("+")[0]
    assert have == want, f"{name}: {have} installed, {want} constrained"
print("installed versions match the constraints")
PYEOF

# Loading, chat templates and labels, packing, a run key; a real LoRA training run whose
# adapter is saved, reloaded and merged; the FSDP2 adapter save over gloo; the attention
# choice; lm-eval scoring a loaded model on the local tasks; the CLI's refusals.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=false
PATH="$VENV/bin:$PATH" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  -o addopts="-ra --strict-markers" \
  tests/test_train.py tests/test_evaluate.py tests/test_lm_eval_run.py tests/test_cli.py \
  -m "not slow or min_versions"
echo "test-min: passed in $(( $(date +%s) - start )) s"
