"""Scoring API benchmark: `python -m bench serve [--quick]`.

One world (a day's snapshot of 5,000 customers and 10,000 terminals in the Feast SQLite
online store, a champion of 100 trees of depth 3: the stream benchmark's), two servers, each
one process on loopback, started once:

* `api`: `python -m cardscore.serving` (validation, online features from the snapshot reader,
  `inplace_predict`, top-5 contributions, the score message);
* `mlflow`: `mlflow models serve -m models:/<model>@champion --env-manager local --workers 1`
  on the same model version, sent the same transactions' features, precomputed with the
  same reader (it validates nothing, looks nothing up, explains nothing).

The load comes from a separate process (`--role load`, asyncio over raw HTTP/1.1 keep-alive
connections), for single transactions and for batches of 10:

* latency at a fixed rate (--rate requests/s for --seconds, open loop: request i is due at
  t0 + i/rate whatever happened to the others, so a slow server cannot slow the load down);
  p50/p90/p99/max from the intended send time (and from the actual send, for reference);
* throughput at saturation (--concurrency connections in a closed loop for
  --saturation-seconds): requests/s and transactions/s.

Warm-up requests first, every measurement interleaved between the servers, medians of --runs;
ratios api/mlflow. A check first: both servers give the same scores for the same
transactions. Results: bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_DIR, write_result
from bench.histograms import scrape_histograms, stage_breakdown

TARGETS = ("api", "mlflow")
MODES = {"single": 1, "batch10": 10}
WARMUP_REQUESTS = 300


# ------------------------------------------------------------------------------ the world


def world(work: Path) -> tuple[Any, Path]:
    """The stream benchmark's world under `work`; returns the settings and a config file."""
    import yaml

    from bench.stream import build_world
    from cardscore.core.config import load_settings

    home = work / "home"
    settings = load_settings(overrides={"home": str(home), "logging": {"format": "json", "level": "WARNING"}})
    version = build_world(settings)
    print(f"world: online store and model v{version}", flush=True)
    config = work / "cardscore.yaml"
    config.write_text(yaml.safe_dump({"home": str(home), "logging": {"format": "json", "level": "INFO"}}))
    return settings, config


def bodies(settings, n: int, batch: int, seed: int) -> tuple[list[bytes], list[bytes], list[list[float]]]:
    """`n` request bodies of `batch` transactions for the API, the same transactions' feature
    rows as `dataframe_split` bodies for MLflow, and the features (for the score check)."""
    from bench.stream import transaction_lines
    from cardscore.features.definitions import MODEL_FEATURES
    from cardscore.features.online_reader import open_reader
    from cardscore.schemas.contracts import TRANSACTION_EVENT
    from cardscore.schemas.validation import validate_bytes

    lines = transaction_lines(n * batch, seed=seed, first_id=1 + seed * 10_000_000)
    records = [validate_bytes(line, TRANSACTION_EVENT) for line in lines]
    reader = open_reader(settings, "snapshot", background=False)
    try:
        rows = reader.read(*(np.array([r[k] for r in records]) for k in
                             ("customer_id", "terminal_id", "amount", "event_time")))
    finally:
        reader.close()
    matrix = rows.matrix.tolist()
    api, mlflow = [], []
    for i in range(n):
        chunk = slice(i * batch, (i + 1) * batch)
        api.append(lines[chunk][0] if batch == 1 else b"[" + b",".join(lines[chunk]) + b"]")
        mlflow.append(json.dumps({"dataframe_split": {"columns": list(MODEL_FEATURES),
                                                      "data": matrix[chunk]}}).encode())
    return api, mlflow, matrix


# ------------------------------------------------------------------------------ servers


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except OSError:
        return 0
    except Exception:
        return 0


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while _get(url) != 200:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready in {timeout:.0f} s; log {log}")
        time.sleep(0.2)  # readiness poll interval


def start_api(config: Path, work: Path) -> tuple[subprocess.Popen, str]:
    from cardscore.services.broker import free_port

    port = free_port()
    log = work / "api.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cardscore.serving", "--config", str(config),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO_DIR, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz", proc, log)
    return proc, f"{url}/v1/score"


def start_mlflow(settings, work: Path) -> tuple[subprocess.Popen, str]:
    from cardscore.services.broker import free_port

    port = free_port()
    log = work / "mlflow.log"
    bin_dir = Path(sys.executable).parent  # mlflow starts `uvicorn` by name
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
           "MLFLOW_REGISTRY_URI": settings.mlflow_registry_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow = bin_dir / "mlflow"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(mlflow), "models", "serve", "-m",
                                 f"models:/{settings.mlflow.model_name}@champion", "--env-manager", "local",
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/ping", proc, log)
    return proc, f"{url}/invocations"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def post(url: str, body: bytes) -> Any:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def check_scores(api_url: str, mlflow_url: str, api_bodies: list[bytes], mlflow_bodies: list[bytes]) -> float:
    """Both servers score the same transactions alike: the largest difference."""
    worst = 0.0
    for ours, theirs in zip(api_bodies[:20], mlflow_bodies[:20], strict=True):
        answer = post(api_url, ours)
        scores = [a["score"] for a in (answer if isinstance(answer, list) else [answer])]
        predictions = post(mlflow_url, theirs)["predictions"]
        worst = max(worst, float(np.max(np.abs(np.asarray(scores) - np.asarray(predictions, dtype=np.float64)))))
    if worst > 1e-6:
        raise AssertionError(f"the API and MLflow disagree on scores by {worst}")
    return worst


# ------------------------------------------------------------------------------ the load process


def _request(url: str, body: bytes) -> tuple[str, int, bytes]:
    rest = url.split("://", 1)[1]
    hostport, path = rest.split("/", 1)
    host, port = hostport.split(":")
    head = (f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return host, int(port), head + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        import socket

        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def roundtrip(self, payload: bytes) -> int:
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def _paced(url: str, bodies: list[bytes], rate: float, seconds: float, max_connections: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, port, _ = _request(url, b"")
    payloads = [_request(url, b)[2] for b in bodies]
    idle: list[Connection] = [await Connection.open(host, port) for _ in range(min(16, max_connections))]
    opened = len(idle)
    reconnects = 0
    freed = asyncio.Condition()
    for i in range(WARMUP_REQUESTS):  # warm-up, sequential, not measured
        await idle[0].roundtrip(payloads[i % len(payloads)])
    n = int(rate * seconds)
    intended = np.empty(n)
    sent = np.empty(n)
    done = np.empty(n)
    statuses = np.empty(n, dtype=np.int64)

    async def one(i: int) -> None:
        nonlocal opened, reconnects
        async with freed:
            while not idle and opened >= max_connections:
                await freed.wait()
            if idle:
                conn = idle.pop(0)  # the longest idle first: every connection stays in use
            else:
                opened += 1
                conn = None
        if conn is None:
            conn = await Connection.open(host, port)
        sent[i] = loop.time()
        try:
            statuses[i] = await conn.roundtrip(payloads[i % len(payloads)])
        except (asyncio.IncompleteReadError, ConnectionResetError):
            # The server closed an idle keep-alive connection (uvicorn: after 5 s) before it
            # answered: what any HTTP client does, once, on a new connection (the latency still
            # counts from the intended send time).
            conn.close()
            reconnects += 1
            conn = await Connection.open(host, port)
            statuses[i] = await conn.roundtrip(payloads[i % len(payloads)])
        done[i] = loop.time()
        async with freed:
            idle.append(conn)
            freed.notify()

    start = loop.time() + 0.05
    tasks = []
    for i in range(n):
        intended[i] = start + i / rate
        delay = intended[i] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule: request i is due at t0 + i/rate
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    from_intended = (done - intended) * 1000
    from_send = (done - sent) * 1000
    return {
        "requests": n, "offered_per_s": rate, "errors": int((statuses != 200).sum()),
        "achieved_per_s": round(float((n - 1) / (done.max() - intended[0])), 1) if n > 1 else None,
        "connections": opened, "reconnects": reconnects,
        **{f"latency_{q}_ms": round(float(np.percentile(from_intended, p)), 3)
           for q, p in (("p50", 50), ("p90", 90), ("p99", 99))},
        "latency_max_ms": round(float(from_intended.max()), 3),
        "from_send_p50_ms": round(float(np.percentile(from_send, 50)), 3),
        "from_send_p99_ms": round(float(np.percentile(from_send, 99)), 3),
    }


async def _saturate(url: str, bodies: list[bytes], seconds: float, concurrency: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, port, _ = _request(url, b"")
    payloads = [_request(url, b)[2] for b in bodies]
    connections = [await Connection.open(host, port) for _ in range(concurrency)]
    for i in range(WARMUP_REQUESTS // 3):
        await connections[0].roundtrip(payloads[i % len(payloads)])
    latencies: list[float] = []
    errors = 0
    end = loop.time() + seconds

    async def worker(conn: Connection, offset: int) -> None:
        nonlocal errors
        i = offset
        while loop.time() < end:
            started = loop.time()
            if await conn.roundtrip(payloads[i % len(payloads)]) != 200:
                errors += 1
            latencies.append(loop.time() - started)
            i += concurrency

    started = loop.time()
    await asyncio.gather(*(worker(c, k) for k, c in enumerate(connections)))
    elapsed = loop.time() - started
    for conn in connections:
        conn.close()
    values = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "concurrency": concurrency,
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "latency_p50_ms": round(float(np.percentile(values, 50)), 3),
            "latency_p99_ms": round(float(np.percentile(values, 99)), 3)}


def _run_load(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    bodies = [line.encode() for line in Path(spec["bodies"]).read_text().splitlines()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if spec["kind"] == "paced":
        result = asyncio.run(_paced(spec["url"], bodies, spec["rate"], spec["seconds"], spec["max_connections"]))
    else:
        result = asyncio.run(_saturate(spec["url"], bodies, spec["seconds"], spec["concurrency"]))
    print(json.dumps(result), flush=True)
    return 0


def load(work: Path, url: str, bodies: list[bytes], **spec: Any) -> dict[str, Any]:
    """Run the load generator in its own process; its JSON result."""
    body_file = work / f"bodies-{abs(hash((url, len(bodies), bodies[0])))}.txt"
    if not body_file.exists():
        body_file.write_text("\n".join(b.decode() for b in bodies))
    spec_file = work / "load.json"
    spec_file.write_text(json.dumps({"url": url, "bodies": str(body_file), **spec}))
    proc = subprocess.run([sys.executable, "-m", "bench.serve", "--role", "load", "--spec", str(spec_file)],
                          capture_output=True, text=True, cwd=REPO_DIR, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(REPO_DIR)})
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ main


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(float(statistics.median(values)), 3) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s of the fixed-rate runs")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each fixed-rate run")
    parser.add_argument("--saturation-seconds", type=float, default=10.0, help="length of each saturation run")
    parser.add_argument("--concurrency", type=int, default=16, help="connections of the saturation runs")
    parser.add_argument("--max-connections", type=int, default=256, help="most connections of a fixed-rate run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", "--smoke", action="store_true", help="short runs, 1 of each: a smoke run (results: <name>.smoke.json)")
    parser.add_argument("--workdir", help="keep the world and logs here (default: a temp folder)")
    parser.add_argument("--role", choices=["load"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        return _run_load(Path(args.spec))
    if args.quick:
        args.seconds, args.saturation_seconds, args.runs = 3.0, 2.0, 1

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    settings, config = world(work)
    payloads = {mode: bodies(settings, 2000, size, seed=k) for k, (mode, size) in enumerate(MODES.items())}
    api_proc, api_url = start_api(config, work)
    procs = [api_proc]
    try:
        mlflow_proc, mlflow_url = start_mlflow(settings, work)
        procs.append(mlflow_proc)
        urls = {"api": api_url, "mlflow": mlflow_url}
        api_metrics = api_url.replace("/v1/score", "/metrics")
        difference = max(check_scores(api_url, mlflow_url, payloads[m][0], payloads[m][1]) for m in MODES)
        print(f"scores agree (largest difference {difference:.1e})", flush=True)
        results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
            t: {m: {"paced": [], "saturation": []} for m in MODES} for t in TARGETS}
        for run in range(args.runs):
            for mode in MODES:
                for target in TARGETS:  # interleaved: a change of load on the machine hits both
                    chosen = payloads[mode][0 if target == "api" else 1]
                    # The API's own histograms (stages, GC pauses) over the paced run: where its tail is.
                    before = scrape_histograms(api_metrics) if target == "api" else {}
                    paced = load(work, urls[target], chosen, kind="paced", rate=args.rate, seconds=args.seconds,
                                 max_connections=args.max_connections)
                    if target == "api":
                        paced["stages"] = stage_breakdown(before, scrape_histograms(api_metrics))
                    results[target][mode]["paced"].append(paced)
                    print(f"run {run + 1} {target} {mode} @ {args.rate:g}/s: {paced}", flush=True)
                    saturated = load(work, urls[target], chosen, kind="saturation",
                                     seconds=args.saturation_seconds, concurrency=args.concurrency)
                    results[target][mode]["saturation"].append(saturated)
                    print(f"run {run + 1} {target} {mode} saturation: {saturated}", flush=True)
    finally:
        for proc in procs:
            stop(proc)

    summary: dict[str, Any] = {}
    for target in TARGETS:
        summary[target] = {}
        for mode, size in MODES.items():
            paced, saturated = results[target][mode]["paced"], results[target][mode]["saturation"]
            summary[target][mode] = {
                f"at_{int(args.rate)}_per_s": {k: _median(paced, k) for k in (
                    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_max_ms", "achieved_per_s", "errors")},
                **({"stages_last_run": paced[-1].get("stages")} if target == "api" and paced else {}),
                "saturation": {"requests_per_s": _median(saturated, "requests_per_s"),
                               "transactions_per_s": round((_median(saturated, "requests_per_s") or 0) * size, 1),
                               "latency_p99_ms": _median(saturated, "latency_p99_ms"),
                               "errors": _median(saturated, "errors")},
            }
    key = f"at_{int(args.rate)}_per_s"
    summary["ratios_api_vs_mlflow"] = {
        mode: {"p99": _ratio(summary["api"][mode][key]["latency_p99_ms"], summary["mlflow"][mode][key]["latency_p99_ms"]),
               "saturation_throughput": _ratio(summary["api"][mode]["saturation"]["requests_per_s"],
                                               summary["mlflow"][mode]["saturation"]["requests_per_s"])}
        for mode in MODES
    }
    p99 = summary["api"]["single"][key]["latency_p99_ms"]
    summary["targets"] = {"api_p99_single_le_10ms": None if p99 is None or args.rate != 500 else p99 <= 10.0}
    path = write_result("serve", {
        "parameters": {"rate": args.rate, "seconds": args.seconds, "saturation_seconds": args.saturation_seconds,
                       "concurrency": args.concurrency, "runs": args.runs, "modes": MODES,
                       "warmup_requests": WARMUP_REQUESTS, "reader": "snapshot (SQLite store)",
                       "model": "XGBoost 100 trees depth 3", "top_contributions": 5,
                       "mlflow": "mlflow models serve --env-manager local --workers 1, features precomputed"},
        "method": "open-loop load from a separate process over keep-alive HTTP/1.1; latency from the intended "
                  "send time (t0 + i/rate) to the full response; saturation: closed loop, --concurrency connections",
        "score_check_max_difference": difference,
        "summary": summary,
        "runs": results,
    }, smoke=args.quick, packages=("cardscore", "starlette", "uvicorn", "mlflow", "xgboost", "feast", "numpy"))
    print(json.dumps(summary, indent=2))
    print(f"results: {path}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


if __name__ == "__main__":
    sys.exit(main())
