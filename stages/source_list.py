"""source_list: the names of the sources, in params.yaml order, to data/source_list.json.

dedup (which source's duplicate survives) and validate (which sources a record may name)
need the names and their order only. Reading them from this file instead of the `sources`
params key means an edit inside one source (a column map, `on_error`) reruns that source's
ingest and this second-long stage, and nothing downstream unless the data changes.
"""

from __future__ import annotations

from instar.console import console, parser, run
from instar.params import core as config
from instar.params.sources import SourceParams
from instar.records.paths import SOURCE_LIST
from instar.records.storage import write_json


def main() -> None:
    parser("source_list", __doc__).parse_args()
    params = config.read_params()
    names = list(params.get("sources") or {})
    for name in names:
        SourceParams.named(name, params)
    if not names:
        raise config.ParamsError("params.yaml: `sources` is empty; the pipeline needs one")
    write_json(SOURCE_LIST, {"sources": names})
    console.print(f"source_list: {len(names)} sources -> {SOURCE_LIST}")


if __name__ == "__main__":
    run(main)
