"""hub@<name> and tokenizer@<name>: one hub repository of params `hub_data` (or `tokenizers`)
at its pinned commit, read from the HF cache, as files under data/hub/<name>/ (or
data/tokenizers/<name>/): Parquet per config and split for a dataset, the files its patterns
allow for a model repository, and hub.json recording what was read (instar/hub.py).
"""

from __future__ import annotations

from instar.console import parser, run
from instar.hub import ROOTS, fetch
from instar.params.core import read_params
from instar.params.hub import HubDataParams, TokenizerParams


def main() -> None:
    p = parser("hub_data", __doc__)
    p.add_argument("name", help="a key of the section in params.yaml")
    p.add_argument(
        "--section", choices=sorted(ROOTS), default="hub_data",
        help="hub_data (hub@<name>, data/hub/) or tokenizers (tokenizer@<name>, data/tokenizers/)",
    )  # fmt: skip
    args = p.parse_args()
    model = HubDataParams if args.section == "hub_data" else TokenizerParams
    fetch(args.name, model.named(args.name, read_params()), args.section)


if __name__ == "__main__":
    run(main)
