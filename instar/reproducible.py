"""Same inputs, same bytes: the one time stamp artifacts may carry, and the CPU pins.

Outputs are compared by hash (dvc.lock), so nothing in them may come from the clock or from
how fast a machine ran. A time stamp that a format insists on (GX's run time) comes from
SOURCE_DATE_EPOCH when it is set (the reproducible-builds convention), otherwise from the
hash of the data it describes: a date that stands for the data, not for when it was built.

Float results on CPU depend on the thread count (a reduction splits its sum per thread) and
on the instruction set torch and oneDNN/MKL pick at run time (AVX-512 vs AVX2 kernels round
differently). `pin_cpu()` fixes both before torch is imported; `dvc repro` runs a stage's
module directly, so the stages call it themselves rather than trusting the Makefile.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

# A thread count every machine that runs the default profile has; more threads would give
# other float bits, so it is fixed rather than taken from the machine.
THREADS = 2
CPU_PINS = {
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels (softmax, reductions)
    # MKL's matmuls on one fixed code path. COMPATIBLE (SSE2 without the approximate
    # rcpps/rsqrtps) is the one branch MKL honours on every x86 CPU: it ignores AVX2 and
    # the other named branches on AMD and runs its AUTO dispatch there (MKL_VERBOSE prints
    # "CNR:AUTO"), which gave other evaluation and training bits on an AMD EPYC than the
    # committed lock's. It costs time: on that EPYC a train@tiny-shaped matmul (6144x192 by
    # 192x512, 2 threads) takes 2.2x AUTO's, and a fresh clone's train@tiny 88 s for its
    # 33 steps (the suite sets AUTO: tests/conftest.py).
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's kernels
}


# The pins this process set itself, as opposed to the caller's own settings.
PINNED: set[str] = set()


def pin_cpu(environ=os.environ) -> None:
    """Set the CPU pins unless the caller set them (a person may want speed over bits)."""
    for name, value in CPU_PINS.items():
        if name not in environ:
            environ[name] = value
            PINNED.add(name)


def pin_torch_threads() -> None:
    """torch's intra-op pool to the pinned count (it reads OMP_NUM_THREADS only at import)."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", THREADS)))


def timestamp(digest: str, environ=os.environ) -> datetime:
    """SOURCE_DATE_EPOCH if set, else a time derived from `digest` (a hex hash of the data).

    The derived time is below 2**31 seconds (before 2038), which every date library takes.
    """
    epoch = environ.get("SOURCE_DATE_EPOCH")
    seconds = int(epoch) if epoch else int(digest[:8], 16) % 2**31
    return datetime.fromtimestamp(seconds, UTC)


# matplotlib's savefig(metadata=...) for PNG: its default "Software" key names matplotlib's
# version, so an upgrade alone would change a chart's bytes. PNGs carry no date of their own.
PNG_METADATA: dict[str, str | None] = {"Software": None}
