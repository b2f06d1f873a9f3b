"""The stand-in hub of the rehearsal: an HF cache in the hub's own layout holding every
repository the paper profile names (tiny models under the paper's ids, InstAr-500k- and
OALL-shaped data sets), so that the paper profile runs offline on CPU.

    python -m tests.standin_hub /tmp/standin-hub     # then HF_HUB_CACHE=/tmp/standin-hub
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.standin_data import add_paper_data, instar_rows
from tests.standin_models import add_paper_models


def fill(cache: Path) -> dict[str, str]:
    """Models and data sets into `cache`; returns repo id -> commit (refs/main)."""
    cache.mkdir(parents=True, exist_ok=True)
    # the tiny tokenizers learn the stand-in InstAr rows' vocabulary, as a real one covers it
    texts = [f"{r['system']} {r['instruction']} {r['output']}" for r in instar_rows()]
    return {**add_paper_models(cache, texts), **add_paper_data(cache)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache", type=Path, help="the folder to fill (use it as HF_HUB_CACHE)")
    commits = fill(parser.parse_args().cache)
    print(f"{len(commits)} repositories in the stand-in hub")


if __name__ == "__main__":
    main()
