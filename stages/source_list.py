"""source_list: the names of the sources, in params.yaml order, to data/source_list.json, and
each source's `clean` overrides to data/clean_overrides/<source>.json.

dedup (which source's duplicate survives) and validate (which sources a record may name)
need the names and their order only. Reading them from this file instead of the `sources`
params key means an edit inside one source (a column map, `on_error`) reruns that source's
ingest and this second-long stage, and nothing downstream unless the data changes. Each
clean@<source> depends on its own overrides file, for the same reason.
"""

from __future__ import annotations

from instar.console import console, parser, run
from instar.params import core as config
from instar.params.sources import SourceParams
from instar.records.paths import CLEAN_OVERRIDES, SOURCE_LIST
from instar.records.storage import atomic_dir, write_json


def main() -> None:
    parser("source_list", __doc__).parse_args()
    params = config.read_params()
    names = list(params.get("sources") or {})
    for name in names:
        SourceParams.named(name, params)
    if not names:
        raise config.ParamsError("params.yaml: `sources` is empty; the pipeline needs one")
    write_json(SOURCE_LIST, {"sources": names})
    with atomic_dir(CLEAN_OVERRIDES) as tmp:
        for name in names:
            write_json(tmp / f"{name}.json", SourceParams.named(name, params).clean)
    console.print(f"source_list: {len(names)} sources -> {SOURCE_LIST}, {CLEAN_OVERRIDES}/")


if __name__ == "__main__":
    run(main)
