"""The dataset contract (great-expectations): what the rows that pass the record checks must
look like together, and Data Docs that show a person every expectation and its result.

Two suites, run in an in-memory (ephemeral) GX context, so nothing GX makes lands in the git
work tree: `record_contract` reads every row with the record check it failed (the share of
failing rows, as a table of checks), and `instar` reads the rows that pass. The bounds come
from params `validate` at run time, so a params change reruns validation only. The HTML goes
to reports/validation/ (a DVC output), built beside it and renamed into place.

The same rows give the same HTML bytes: GX's run time (shown, and part of the pages' paths)
is instar.reproducible.timestamp() of the rows, and what GX takes from the clock or from
uuid4 while rendering is rewritten afterwards (`steady_html`).
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from instar import reproducible
from instar.params.tasks import PUBLISHED
from instar.params.validate import ValidateParams
from instar.records.schema import FIELDS, TEXT_FIELDS
from instar.records.storage import replace_dir
from instar.text import scrub

DOCS = Path("reports/validation")
PASSED = "passed"  # the record_check value of a row that passes every record check
# The contract's patterns are scrub's: it checks that clean left no personal data that
# scrub would know. GX reads a regex as a string.
EMAIL = scrub.EMAIL.pattern
PHONE = scrub.DIALLED_PHONE.pattern
RESULT_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
# Without network the Data Docs' icon font (a CDN asset) never loads and the status column
# would be blank: the words make the page readable offline too.
OFFLINE_CSS = """
td i.fas.fa-check-circle.text-success::after { content: " passed"; color: #1e7e34; }
td i.fas.fa-times.text-danger::after { content: " failed"; color: #bd2130; }
td i.fas.fa-exclamation-triangle::after { content: " error"; color: #bd2130; }
td i.fas::after { font-family: sans-serif; font-weight: bold; font-style: normal; }
"""


class ExpectColumnQuantileValuesInRange(gxe.ExpectColumnQuantileValuesToBeBetween):
    """GX's quantile expectation, with plain Python values in its result.

    GX 1.24 returns numpy booleans here, which its own result store cannot serialise as JSON
    (on numpy 2), so the stock expectation breaks any run that stores results.
    """

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        out = super()._validate(metrics, runtime_configuration, execution_engine)
        observed = out["result"]["observed_value"]
        observed["values"] = [None if v is None else float(v) for v in observed["values"]]
        details = out["result"]["details"]
        details["success_details"] = [bool(b) for b in details["success_details"]]
        out["success"] = bool(out["success"])
        return out


@dataclass(frozen=True)
class Check:
    """One expectation, with a stable name (metrics key, failure table, Data Docs) and words."""

    name: str
    expectation: gxe.Expectation
    expected: str  # the bound, short, for the failure table
    says: str  # the whole expectation as a sentence, shown in the Data Docs
    # How to read the result: "share" = the share of rows GX counts as unexpected is the
    # observed value; "complement" = the share of the other rows is; "quantiles"; "count".
    reading: str = "count"


@dataclass(frozen=True)
class Outcome:
    name: str
    success: bool
    expected: str
    observed: str
    samples: tuple[str, ...]  # ids of rows that break it, where rows can


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def _mostly(x: float) -> float:
    return min(1.0, max(0.0, round(x, 10)))


# GX has no "share of one value" expectation; a set expectation with `mostly` is one exactly.
def share_at_most(name: str, column: str, value: str, most: float, what: str) -> Check:
    """Rows with `column == value` are at most `most` of all rows."""
    return Check(
        name,
        gxe.ExpectColumnValuesToNotBeInSet(
            column=column, value_set=[value], mostly=_mostly(1 - most)
        ),
        f"at most {_pct(most)}",
        f"at most {_pct(most)} of rows have {what} (the unexpected values are those rows).",
        "share",
    )


def share_at_least(name: str, column: str, value: str, least: float, what: str) -> Check:
    """Rows with `column == value` are at least `least` of all rows."""
    return Check(
        name,
        gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[value], mostly=_mostly(least)),
        f"at least {_pct(least)}",
        f"at least {_pct(least)} of rows have {what} (the unexpected values are the other rows).",
        "complement",
    )


def record_checks(params: ValidateParams) -> list[Check]:
    """The `record_contract` suite: every row read, with the first record check it failed."""
    most = params.max_invalid_fraction
    return [
        Check(
            "record_contract",
            gxe.ExpectColumnValuesToBeInSet(
                column="record_check", value_set=[PASSED], mostly=_mostly(1 - most)
            ),
            f"at most {_pct(most)} of rows fail",
            f"at most {_pct(most)} of rows fail a record check (pandera). The unexpected values "
            "are the checks that failed; the rows are in data/quarantine/validate.parquet.",
            "share",
        )
    ]


def dataset_checks(
    params: ValidateParams,
    sources: Collection[str] | None = None,
    tasks: Collection[str] | None = None,
) -> list[Check]:
    """The `instar` suite: over the rows that pass the record checks; a share bound for each
    task of `tasks` (None: the published taxonomy)."""
    tasks = PUBLISHED if tasks is None else tasks
    checks = [
        Check(
            "row_count",
            gxe.ExpectTableRowCountToBeBetween(min_value=params.min_rows),
            f"at least {params.min_rows} rows",
            f"at least {params.min_rows} rows pass the record checks.",
        ),
        Check(
            "id_unique",
            gxe.ExpectColumnValuesToBeUnique(column="id"),
            "every id once",
            "every id appears once.",
        ),
    ]
    checks += [
        Check(
            f"not_null:{c}",
            gxe.ExpectColumnValuesToNotBeNull(column=c),
            "no nulls",
            f"no row has a null {c}.",
        )
        for c in FIELDS
    ]
    checks += [
        share_at_most(f"empty_share:{c}", c, "", most, f"an empty {c}")
        for c, most in params.max_empty_share.items()
    ]
    checks += [
        share_at_most(f"task_share:{t}", "task", t, params.max_task_share, f"task {t}")
        for t in tasks
    ]
    for s in sources or ():
        least, most = params.source_share.get(s, (params.min_source_share, 1.0))
        checks += [
            share_at_least(f"source_share_min:{s}", "source", s, least, f"source {s}"),
            share_at_most(f"source_share_max:{s}", "source", s, most, f"source {s}"),
        ]
    least, most = params.synthetic_share
    checks += [
        share_at_least("synthetic_share_min", "origin", "synthetic", least, "origin synthetic"),
        share_at_most("synthetic_share_max", "origin", "synthetic", most, "origin synthetic"),
    ]
    for field, bounds in params.chars_quantiles.items():
        names = sorted(bounds, key=lambda p: int(p[1:]))
        expected = ", ".join(f"{p} in [{_bound(bounds[p])}]" for p in names)
        checks.append(
            Check(
                f"chars_quantiles:{field}",
                ExpectColumnQuantileValuesInRange(
                    column=f"{field}_chars",
                    quantile_ranges={
                        "quantiles": [int(p[1:]) / 100 for p in names],
                        "value_ranges": [list(bounds[p]) for p in names],
                    },
                ),
                expected,
                f"the length of {field} in characters has percentiles {expected}.",
                "quantiles",
            )
        )
    for field in TEXT_FIELDS:
        checks += [
            Check(
                f"no_email:{field}",
                gxe.ExpectColumnValuesToNotMatchRegex(column=field, regex=EMAIL),
                "no e-mail address",
                f"no {field} contains an e-mail address (clean scrubs them).",
            ),
            Check(
                f"no_phone:{field}",
                gxe.ExpectColumnValuesToNotMatchRegex(column=field, regex=PHONE),
                "no phone number",
                f"no {field} contains a phone number (clean scrubs them).",
            ),
        ]
    return checks


def _bound(bounds: tuple[int | None, int | None]) -> str:
    return ", ".join("any" if b is None else str(b) for b in bounds)


def with_lengths(df: pd.DataFrame, params: ValidateParams) -> pd.DataFrame:
    """The rows plus the `<field>_chars` columns the quantile expectations read."""
    extra = {
        f"{f}_chars": df[f].astype(str).str.len().astype("int64")
        for f in params.chars_quantiles
        if f in df
    }
    return df.assign(**extra)


def _context(site: Path, plugins: Path):
    """An in-memory GX context whose only files are the Data Docs site at `site`."""
    styles = plugins / "custom_data_docs" / "styles"
    styles.mkdir(parents=True)
    (styles / "data_docs_custom_styles.css").write_text(OFFLINE_CSS)
    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        plugins_directory=str(plugins),
        data_docs_sites={
            "validation": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(site),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=project)


def _run_suite(context, name: str, checks: list[Check], df: pd.DataFrame, run_id: RunIdentifier):
    source = context.data_sources.add_pandas(name)
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for check in checks:
        # The name leads the sentence, so the Data Docs, the failure table and
        # metrics/validation.json call each expectation the same.
        check.expectation.description = f"{check.name}: {check.says}"
        check.expectation.meta = {"check": check.name}
        suite.add_expectation(check.expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    result_format = dict(RESULT_FORMAT)
    if "id" in df:  # sample rows by id, not by position
        result_format["unexpected_index_column_names"] = ["id"]
    result = definition.run(
        batch_parameters={"dataframe": df}, result_format=result_format, run_id=run_id
    )
    found = {r.expectation_config.meta["check"]: r for r in result.results}
    return [(check, found[check.name]) for check in checks]


def outcome(check: Check, result) -> Outcome:
    """A result in the words of the failure table and the metrics."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        message = str(info.get("exception_message") or "").splitlines()[:1]
        return Outcome(check.name, False, check.expected, f"error: {''.join(message)}", ())
    res = result.result or {}
    samples: tuple[str, ...] = ()
    if check.reading == "share":
        observed = (
            f"{res.get('unexpected_percent') or 0.0:.4g}% ({res.get('unexpected_count')} rows)"
        )
        samples = _sample_ids(res)
    elif check.reading == "complement":
        observed = f"{100 - (res.get('unexpected_percent') or 0.0):.4g}%"
    elif check.reading == "quantiles":
        value = res.get("observed_value") or {}
        observed = ", ".join(
            f"p{round(q * 100)}={v:g}" if v is not None else f"p{round(q * 100)}=none"
            for q, v in zip(value.get("quantiles", []), value.get("values", []), strict=False)
        )
    elif "observed_value" in res:
        observed = str(res["observed_value"])
    else:
        n = res.get("unexpected_count", 0)
        observed = f"{n} row{'' if n == 1 else 's'}"
        values = [str(v)[:60] for v in res.get("partial_unexpected_list") or []]
        if values:
            observed += f", e.g. {values[0]!r}"
        samples = _sample_ids(res)
    return Outcome(check.name, bool(result.success), check.expected, observed, samples)


def _sample_ids(res: dict) -> tuple[str, ...]:
    rows = res.get("partial_unexpected_index_list") or []
    return tuple(str(r["id"]) for r in rows[:3] if isinstance(r, dict) and "id" in r)


def run(
    records: pd.DataFrame,
    passed: pd.DataFrame,
    params: ValidateParams,
    sources: Collection[str] | None,
    docs: Path | None = DOCS,
    *,
    tasks: Collection[str] | None = None,
) -> list[Outcome]:
    """Run both suites; write their Data Docs to `docs` (replacing what was there)."""
    docs = Path(docs) if docs is not None else None
    # GX resolves relative paths against a project root that an in-memory context lacks.
    parent = docs.parent.absolute() if docs is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gx-", dir=parent) as tmp:
        site = Path(tmp) / "site"
        context = _context(site, Path(tmp) / "plugins")
        run_time = reproducible.timestamp(frames_digest(records, passed))
        run_id = RunIdentifier(run_name="validate", run_time=run_time)
        pairs = _run_suite(context, "record_contract", record_checks(params), records, run_id)
        pairs += _run_suite(
            context,
            "instar",
            dataset_checks(params, sources, tasks),
            with_lengths(passed, params),
            run_id,
        )
        if docs is not None:
            context.build_data_docs()
            steady_html(site, run_time)
            replace_dir(site, docs)
        # GX put the plugins folder on sys.path; it is gone after this block.
        if str(Path(tmp) / "plugins") in sys.path:
            sys.path.remove(str(Path(tmp) / "plugins"))
    return [outcome(check, result) for check, result in pairs]


def frames_digest(*frames: pd.DataFrame) -> str:
    """A hex hash of the frames' values (as text, so that any column type hashes)."""
    h = hashlib.sha256()
    for df in frames:
        h.update(",".join(map(str, df.columns)).encode())
        h.update(pd.util.hash_pandas_object(df.astype(str), index=False).values.tobytes())
    return h.hexdigest()


# GX's own clock stamps (the run time in paths, the logo URL's cache-buster `?d=`, the batch
# marker ge_load_time) and the uuid4 it gives each collapsible block's HTML id.
_STAMP = re.compile(r"\b\d{8}T\d{6}\.\d{6}Z\b")
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def steady_html(site: Path, run_time: datetime) -> None:
    """Rewrite the Data Docs' clock stamps to `run_time` and their uuid4 ids to ids derived
    from the page's path and their order on it: still unique in a page, and the same bytes on
    every build of the same rows. GX has no setting for either."""
    stamp = run_time.strftime("%Y%m%dT%H%M%S.%fZ")
    for page in sorted(site.rglob("*.html")):
        name = page.relative_to(site).as_posix()
        ids: dict[str, str] = {}

        def steady_id(match: re.Match, name=name, ids=ids) -> str:
            if match[0] not in ids:
                seed = hashlib.sha256(f"{name}#{len(ids)}".encode()).digest()[:16]
                ids[match[0]] = str(uuid.UUID(bytes=seed, version=4))
            return ids[match[0]]

        html = page.read_text(encoding="utf-8")
        page.write_text(_UUID4.sub(steady_id, _STAMP.sub(stamp, html)), encoding="utf-8")
