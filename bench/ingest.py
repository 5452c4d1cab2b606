"""Ingest benchmark: simulate the default world, ingest it, and compare with plain Spark.

    python -m bench ingest                  # the whole default world (~190 landing days) + samples
    python -m bench ingest --no-full        # the sample comparisons only (a few minutes)

Measured on the embedded Sail engine, in one process, written to bench/results/ingest.json:

* simulate: generation and landing-write seconds of the default world (5,000 customers,
  10,000 terminals, 183 days) with the simulator's own API;
* full: every landing day ingested once in order (counts per layer and reason, seconds per
  day and per phase, rows/s);
* samples: medians of `--runs` runs over `--sample-days` consecutive days, each run on a
  fresh lake: the ingest job with the SQL validator, the ingest job with the Python
  validator (a UDF on every line), an idempotent re-run, and the **baseline**: a plain
  `spark.read.json` (explicit schema) + Delta append of the same files, no validation;
* parts: medians of the validators alone and of four ways to read numbered lines.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import timed, write_result

PACKAGES = (
    "cardscore", "pyspark", "pysail", "deltalake", "great-expectations", "pyarrow", "pandas", "numpy",
)


def median_of(fn: Callable[[], Any], runs: int) -> dict[str, Any]:
    seconds = [timed(fn)[1] for _ in range(runs)]
    return {"median_s": round(statistics.median(seconds), 4), "seconds": [round(s, 4) for s in seconds]}


# --------------------------------------------------------------------------- setup


def settings_for(lake: Path, landing: str, **ingest: Any) -> Any:
    """Settings with a fresh lake; the workspace (GX context, ...) is shared by every run, as in
    one long-lived process, so the runs do not each pay the GX context's start-up."""
    from cardscore.core.config import load_settings

    return load_settings(
        environ={},
        overrides={
            "home": str(lake.parent / "home"),
            "lake": {"root": lake.as_uri(), "landing": landing},
            "ingest": ingest,
            "logging": {"level": "WARNING"},
        },
    )


def job_context(settings: Any) -> Any:
    from cardscore.core.stage import job_context as context

    return context(settings)


def simulate(landing: str, settings: Any) -> dict[str, Any]:
    from cardscore.simulator import generate_world, write_landing

    world, generation = timed(lambda: generate_world(settings.simulator))
    manifest, writing = timed(lambda: write_landing(world, landing, overwrite=True))
    return {
        "parameters": settings.simulator.model_dump(mode="json"),
        "transactions": manifest["totals"]["transactions"],
        "labels": manifest["totals"]["labels"],
        "transaction_days": manifest["totals"]["transaction_files"],
        "label_days": manifest["totals"]["label_files"],
        "generation_s": round(generation, 3),
        "landing_write_s": round(writing, 3),
    }


def landing_days(landing: str) -> list[date]:
    from cardscore.simulator import iter_landing_days

    return sorted(set(iter_landing_days(landing, "transactions")) | set(iter_landing_days(landing, "labels")))


# --------------------------------------------------------------------------- measurements


def full_ingest(work: Path, landing: str) -> dict[str, Any]:
    from cardscore.jobs.ingest.stage import ingest_day

    days = landing_days(landing)
    # The world's last landing days carry labels only (reports of its last transactions).
    ctx = job_context(settings_for(work / "lake-full", landing, gate={"min_day_lines": {"transactions": 0}}))
    per_day: list[float] = []
    phases: dict[str, list[float]] = {}
    totals: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    started = time.perf_counter()
    for day in days:
        report = ingest_day(ctx, day)
        per_day.append(report.seconds)
        for phase, seconds in report.phase_seconds.items():
            phases.setdefault(phase, []).append(seconds)
        for name, feed in report.feeds.items():
            bucket = totals.setdefault(name, {})
            for key in ("files", "lines", "accepted", "quarantined", "duplicates", "superseded"):
                bucket[key] = bucket.get(key, 0) + getattr(feed, key)
            for reason, count in feed.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
        if len(per_day) % 20 == 0:
            print(f"  full ingest: {len(per_day)}/{len(days)} days", flush=True)
    wall = time.perf_counter() - started
    lines = sum(t["lines"] for t in totals.values())
    lake = ctx.lake
    from cardscore.core import catalog

    table_rows = {
        table: lake.read(table).count()
        for table in (catalog.BRONZE_TRANSACTIONS, catalog.BRONZE_LABELS, catalog.SILVER_TRANSACTIONS,
                      catalog.SILVER_LABELS, catalog.QUARANTINE)
    }
    def phase_medians(reports: list[dict[str, float]]) -> dict[str, float]:
        return {k: round(statistics.median(r.get(k, 0.0) for r in reports), 3) for k in phases}

    by_day = [dict(zip(phases, values, strict=True)) for values in zip(*phases.values(), strict=True)]
    return {
        "days": len(days),
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "wall_s": round(wall, 2),
        "seconds_per_day": {
            "median": round(statistics.median(per_day), 3),
            "mean": round(statistics.fmean(per_day), 3),
            "max": round(max(per_day), 3),
        },
        "phase_median_s": {k: round(statistics.median(v), 3) for k, v in phases.items()},
        # Growth with table size shows here: the first and last 30 days, and every day.
        "phase_median_s_first_30_days": phase_medians(by_day[:30]),
        "phase_median_s_last_30_days": phase_medians(by_day[-30:]),
        "seconds_by_day": [round(x, 2) for x in per_day],
        "lines_per_s": round(lines / wall, 1),
        "per_feed": totals,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "table_rows": table_rows,
    }


def baseline_day(ctx: Any, landing: str, day: date, out: Path) -> int:
    """Plain Spark: read the day's JSON lines with an explicit schema, append to Delta; files read."""
    from cardscore.jobs.ingest.landing import list_landing_files
    from cardscore.jobs.ingest.transforms import FEEDS

    written = 0
    for feed in FEEDS.values():
        files = list_landing_files(landing, feed.name, day) or []
        if not files:
            continue
        schema = ", ".join(f"{f.name} {_json_type(f)}" for f in feed.event.fields)
        frame = ctx.spark.read.schema(schema).json([f.uri for f in files])
        frame.write.format("delta").mode("append").save((out / feed.name).as_uri())
        written += len(files)
    return written


def _json_type(field: Any) -> str:
    return {"long": "bigint", "int": "int", "double": "double", "boolean": "boolean",
            "timestamp": "timestamp", "string": "string", "date": "date"}[field.type.value]


def samples(work: Path, landing: str, days: list[date], runs: int) -> dict[str, Any]:
    from cardscore.jobs.ingest.stage import ingest_day

    results: dict[str, Any] = {"days": [d.isoformat() for d in days], "runs": runs}
    lines = 0

    def fresh(tag: str, run: int, **ingest: Any) -> Any:
        lake = work / f"lake-{tag}-{run}"
        shutil.rmtree(lake, ignore_errors=True)
        return job_context(settings_for(lake, landing, **ingest))

    # Warm-up on a throw-away lake: engine, GX context and Python UDF workers start once.
    ingest_day(fresh("warmup", 0), days[0])
    ingest_day(fresh("warmup-python", 0, validator="python"), days[0])

    timings: dict[str, list[float]] = {"ingest_sql": [], "ingest_python": [], "rerun": [], "baseline": []}
    phase_runs: list[dict[str, float]] = []
    for run in range(runs):
        # Alternate which validator goes first, so neither benefits from the order.
        order = ("sql", "python") if run % 2 == 0 else ("python", "sql")
        for validator in order:
            ctx = fresh(validator, run, validator=validator)
            reports, seconds = timed(lambda ctx=ctx: [ingest_day(ctx, d) for d in days])
            timings[f"ingest_{validator}"].append(seconds)
            if validator == "sql":
                lines = sum(f.lines for r in reports for f in r.feeds.values())
                merged: dict[str, float] = {}
                for r in reports:
                    for k, v in r.phase_seconds.items():
                        merged[k] = merged.get(k, 0.0) + v
                phase_runs.append(merged)
                _, seconds = timed(lambda ctx=ctx: [ingest_day(ctx, d) for d in days])
                timings["rerun"].append(seconds)

        out = work / f"baseline-{run}"
        shutil.rmtree(out, ignore_errors=True)
        _, seconds = timed(lambda ctx=ctx, out=out: [baseline_day(ctx, landing, d, out) for d in days])
        timings["baseline"].append(seconds)
        print(f"  samples: run {run + 1}/{runs} done", flush=True)

    medians = {k: statistics.median(v) for k, v in timings.items()}
    results["lines"] = lines
    for key, values in timings.items():
        results[key] = {
            "median_s": round(medians[key], 3),
            "seconds": [round(v, 3) for v in values],
            "seconds_per_day": round(medians[key] / len(days), 3),
            "lines_per_s": round(lines / medians[key], 1),
        }
    results["phase_median_s_per_day"] = {
        k: round(statistics.median(run[k] for run in phase_runs) / len(days), 3) for k in phase_runs[0]
    }
    results["ratio_ingest_sql_to_baseline"] = round(medians["ingest_sql"] / medians["baseline"], 2)
    results["ratio_ingest_python_to_sql"] = round(medians["ingest_python"] / medians["ingest_sql"], 2)
    results["ratio_rerun_to_ingest"] = round(medians["rerun"] / medians["ingest_sql"], 2)
    return results


def parts(work: Path, landing: str, days: list[date], runs: int) -> dict[str, Any]:
    """The validators alone, and three ways to get numbered lines into the engine."""
    from pyspark.sql import functions as F

    from cardscore.jobs.ingest.landing import (
        LINES_SCHEMA,
        FileLoad,
        lines_frame,
        lines_table,
        list_landing_files,
        read_file,
        split_lines,
        stage_file_lines,
    )
    from cardscore.jobs.ingest.transforms import TRANSACTIONS
    from cardscore.schemas.spark_validation import validate_lines

    ctx = job_context(settings_for(work / "lake-parts", landing))
    spark = ctx.spark
    files = [f for d in days for f in (list_landing_files(landing, "transactions", d) or [])]

    staged_root = work / "staged-lines"

    def loads() -> list[FileLoad]:
        return [FileLoad(stage_file_lines(landing, f, (staged_root / f"{i}.parquet").as_uri()), "bench", 0, new=True)
                for i, f in enumerate(files)]

    def parquet_staging() -> int:  # the job's way: streamed to Parquet, read by the engine
        frame = lines_frame(spark, loads(), days[0])
        return frame.groupBy("source_file").agg(F.max("line_number").alias("n")).agg(F.sum("n")).first()[0] or 0

    def arrow_prepass() -> int:  # the job's way before: whole files split on the driver, in the plan
        frames = [spark.createDataFrame(lines_table([(f.uri, split_lines(read_file(landing, f)))], "bench", 0, days[0]),
                                        schema=LINES_SCHEMA) for f in files]
        return sum(frame.agg(F.max("line_number")).first()[0] or 0 for frame in frames)

    def binary_file_hex_split() -> int:
        total = 0
        for f in files:
            # Sail returns one row per byte-range split of a large file: keep one.
            content = spark.read.format("binaryFile").load(f.uri).limit(1)
            hexed = F.regexp_replace(F.hex("content"), "(..)", ",$1")
            exploded = content.select(F.posexplode(F.split(hexed, ",0A")).alias("position", "hex"))
            numbered = exploded.select(
                (F.col("position") + 1).alias("line_number"),
                F.unhex(F.regexp_replace("hex", ",", "")).alias("raw_bytes"),
            ).where(F.length("raw_bytes") > 0)
            total += numbered.agg(F.max("line_number")).first()[0] or 0
        return total

    def read_text_wholetext() -> int:
        total = 0
        for f in files:
            whole = spark.read.text(f.uri, wholetext=True)
            exploded = whole.select(F.posexplode(F.split("value", "\n")).alias("position", "line"))
            total += exploded.where(F.length("line") > 0).count()
        return total

    lines = lines_frame(spark, loads(), days[0])
    n_lines = lines.count()

    def validator(name: str) -> Callable[[], Any]:
        return lambda: validate_lines(lines, TRANSACTIONS.event, validator=name).groupBy("reason").count().collect()

    out: dict[str, Any] = {"transaction_lines": n_lines, "files": len(files)}
    for name in ("sql", "python"):
        validator(name)()  # warm-up (UDF start)
        out[f"validate_{name}"] = median_of(validator(name), runs)
        out[f"validate_{name}"]["lines_per_s"] = round(n_lines / out[f"validate_{name}"]["median_s"], 1)
    out["ratio_validate_python_to_sql"] = round(
        out["validate_python"]["median_s"] / out["validate_sql"]["median_s"], 2
    )
    readers = {"parquet_staging": parquet_staging, "arrow_prepass": arrow_prepass,
               "binaryfile_hex_split": binary_file_hex_split,
               "read_text_wholetext": read_text_wholetext}
    for name, fn in readers.items():
        counted = fn()
        out[f"lines_{name}"] = {**median_of(fn, runs), "lines": counted}
    out["lines_note"] = (
        "read_text fails on Sail when a file holds invalid UTF-8 (the whole read errors), and "
        "binaryFile returns a large file once per byte-range split; the job streams each file in "
        "blocks to a Parquet file of numbered lines read by the engine (parquet_staging: exact "
        "bytes, one read that also gives the SHA-256, driver memory bounded by a block); "
        "arrow_prepass is the job's way before (whole files in the driver and in the plan)"
    )
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                        help="ingest every landing day of the default world once (default: yes)")
    parser.add_argument("--sample-days", type=int, default=5, help="consecutive days of the samples")
    parser.add_argument("--sample-start", default="2018-07-01", help="first sample day")
    parser.add_argument("--runs", type=int, default=3, help="runs per sample measurement (median)")
    parser.add_argument("--workdir", type=Path, help="where the world and lakes go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    from cardscore.core.config import load_settings
    from cardscore.core.engine import stop_spark
    from cardscore.core.logs import configure_logging

    configure_logging("WARNING", "json")  # the per-day summaries would drown the progress lines
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cardscore-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    landing = (work / "landing").as_uri()
    first = date.fromisoformat(args.sample_start)
    sample_days = [first + timedelta(days=i) for i in range(args.sample_days)]
    payload: dict[str, Any] = {"workdir": str(work), "engine": "embedded Sail (in-process)"}
    try:
        print(f"simulating the default world into {landing}", flush=True)
        payload["simulate"] = simulate(landing, load_settings(environ={}))
        if args.full:
            print("ingesting every landing day", flush=True)
            payload["full"] = full_ingest(work, landing)
        print(f"samples: {args.sample_days} days x {args.runs} runs", flush=True)
        payload["samples"] = samples(work, landing, sample_days, args.runs)
        payload["parts"] = parts(work, landing, sample_days, args.runs)
    finally:
        stop_spark()
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    path = write_result("ingest", payload, packages=PACKAGES)
    print(f"wrote {path}")
    return 0
