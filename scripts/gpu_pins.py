"""What scripts/gpu_check.sh installs on a GPU machine: the project's locked versions, with
their dependencies, around the machine's own torch (a CUDA build that must stay as it is).

    python scripts/gpu_pins.py requirements              # the packages gpu_check needs, pinned
    python scripts/gpu_pins.py constraints [--torch V]   # requirements.lock less torch + torch==V

The constraints hold every locked version, so the dependencies pip pulls in resolve to the
lock too, and `torch==` the installed version (default: what `import torch` reports), so no
requirement can replace or upgrade the machine's torch; a clash fails the install instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# What the training and evaluation paths import beyond torch (stages.train, instar.modeling.loading,
# stages.evaluate, scripts/gpu_check.py).
NEEDED = (
    "transformers", "tokenizers", "huggingface_hub", "safetensors", "trl", "peft",
    "accelerate", "datasets", "bitsandbytes", "lm-eval", "dvclive", "pydantic", "pyyaml",
    "rich", "pyarrow",
)  # fmt: skip


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(text: str) -> dict[str, str]:
    """name -> "name==version" for every pinned line of a requirements.lock."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            pins[canonical(m.group(1))] = line
    return pins


def requirements(text: str, names=NEEDED) -> list[str]:
    pins = lock_pins(text)
    missing = [n for n in names if canonical(n) not in pins]
    if missing:
        raise SystemExit(f"requirements.lock pins none of {missing}")
    return [pins[canonical(n)] for n in names]


def constraints(text: str, torch_version: str) -> list[str]:
    pins = lock_pins(text)
    pins.pop("torch", None)  # the lock's is the CPU build; the machine's own stays
    return [*pins.values(), f"torch=={torch_version}"]


def installed_torch() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        raise SystemExit("no torch installed: gpu_check runs on the machine's own") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["requirements", "constraints"])
    p.add_argument("--torch", help="the torch version to hold (default: the installed one)")
    p.add_argument("--lock", type=Path, default=LOCK)
    args = p.parse_args(argv)
    text = args.lock.read_text()
    if args.what == "requirements":
        lines = requirements(text)
    else:
        lines = constraints(text, args.torch or installed_torch())
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
