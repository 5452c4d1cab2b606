"""One function, `get_spark`, returns the SparkSession for the configured engine.

Modes, first match wins:
1. an explicit `remote` argument (a job's `--remote sc://...` option) -> Spark Connect,
2. `$SPARK_REMOTE` -> Spark Connect (also how `spark-submit` jobs reach a Connect server),
3. running under `spark-submit` without SPARK_REMOTE -> classic JVM Spark,
4. `engine.mode` from settings: `embedded` (default; Sail in this process), `connect`, `classic`.

Job code must use only the DataFrame/SQL API common to classic Spark and Spark Connect.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cardscore.core.config import Settings, load_settings
from cardscore.core.logs import get_logger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger(__name__)

# Delta Lake built for the pinned pyspark's Spark minor (deploy/jvm/delta/pom.xml, `make jars`);
# from Delta 4.1 the Maven artifact's name carries the Spark version.
DELTA_VERSION = "4.4.0"
DELTA_SPARK_MINOR = "4.2"
DELTA_PACKAGE = f"io.delta:delta-spark_{DELTA_SPARK_MINOR}_2.13:{DELTA_VERSION}"
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# Every session computes dates, hours and windows in UTC, whatever the machine's zone.
BASE_CONF = {"spark.sql.session.timeZone": "UTC"}
CLASSIC_LOCAL_CONF = {"spark.sql.shuffle.partitions": "8", "spark.ui.enabled": "false"}

MISSING_DELTA_MESSAGE = f"""\
Delta Lake is not available in this classic Spark session (the Delta jars are not on the classpath).
Fix it one of these ways:
  * the local jars (`make jars` fetches them from Maven Central into deploy/jvm/lib/delta):
        spark-submit --jars "$(cardscore engine jars)" <job>.py ...
    (the job turns Delta's extension and catalog on itself; elsewhere add
        --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
        --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog),
  * or the package, where Spark can reach Maven Central: spark-submit --packages {DELTA_PACKAGE} ...
  * or a Spark Connect engine that has Delta: `cardscore engine start` (Sail) or
    `cardscore engine start --classic` (JVM Spark), then
    SPARK_REMOTE=sc://127.0.0.1:15002 spark-submit <job>.py  (or the job's --remote option),
  * or run without spark-submit on the embedded engine (engine.mode: embedded, the default)."""


class EngineError(RuntimeError):
    """The engine could not be started or lacks something the jobs need."""


@dataclass(frozen=True)
class EngineChoice:
    mode: str  # embedded | connect | classic
    remote: str | None = None
    reason: str = ""


def resolve_engine(
    settings: Settings, remote: str | None = None, environ: dict[str, str] | None = None
) -> EngineChoice:
    env = os.environ if environ is None else environ
    if remote:
        return EngineChoice("connect", remote, "--remote option")
    if env.get("SPARK_REMOTE"):
        return EngineChoice("connect", env["SPARK_REMOTE"], "$SPARK_REMOTE")
    if env.get("PYSPARK_GATEWAY_PORT"):
        return EngineChoice("classic", None, "launched by spark-submit")
    mode = settings.engine.mode
    if mode == "connect":
        if not settings.engine.remote:
            raise EngineError("engine.mode is connect but engine.remote (sc://host:port) is not set")
        return EngineChoice("connect", settings.engine.remote, "engine.mode")
    return EngineChoice(mode, None, "engine.mode")


class EmbeddedEngine:
    """A Sail Spark Connect server inside this Python process, on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # Sail logs every session at INFO through RUST_LOG; keep the console for our own logs.
        os.environ.setdefault("RUST_LOG", "error")
        from pysail.spark import SparkConnectServer

        self._server = SparkConnectServer(host, port)
        self._server.start()
        bound_host, bound_port = self._server.listening_address
        self.url = f"sc://{bound_host}:{bound_port}"

    def stop(self) -> None:
        self._server.stop()


_lock = threading.Lock()
_embedded: EmbeddedEngine | None = None
_session: SparkSession | None = None
_session_key: tuple[str, str | None] | None = None


def get_spark(settings: Settings | None = None, remote: str | None = None) -> SparkSession:
    """The process-wide SparkSession for the configured engine (created on first use)."""
    global _session, _session_key
    settings = settings or load_settings()
    choice = resolve_engine(settings, remote)
    key = (choice.mode, choice.remote)
    with _lock:
        if _session is not None and _session_key == key:
            return _session
        if _session is not None:
            raise EngineError(
                f"a {_session_key[0]} session is already active in this process; "  # type: ignore[index]
                "call cardscore.core.engine.stop_spark() before switching engines"
            )
        if choice.mode == "embedded":
            session = _embedded_session(settings)
        elif choice.mode == "connect":
            session = _connect_session(settings, choice.remote or "")
        else:
            session = _classic_session(settings)
        _session, _session_key = session, key
        log.info("engine.session", mode=choice.mode, reason=choice.reason, remote=choice.remote)
        return session


def has_session() -> bool:
    """Whether this process already holds an engine session (then whoever opened it stops it)."""
    return _session is not None


def embedded_url(settings: Settings | None = None) -> str:
    """The embedded Sail server's sc:// URL, starting it if needed."""
    global _embedded
    settings = settings or load_settings()
    if _embedded is None:
        _embedded = EmbeddedEngine(settings.engine.host, 0)
        atexit.register(stop_spark)
    return _embedded.url


def stop_spark() -> None:
    """Stop the session, then the embedded server (in that order, or the interpreter hangs)."""
    global _session, _session_key, _embedded
    with _lock:
        if _session is not None:
            try:
                _session.stop()
            finally:
                _session, _session_key = None, None
        if _embedded is not None:
            try:
                _embedded.stop()
            finally:
                _embedded = None


def _builder_with_conf(builder, settings: Settings):
    for key, value in {**BASE_CONF, **settings.engine.conf}.items():
        builder = builder.config(key, value)
    return builder


def _embedded_session(settings: Settings) -> SparkSession:
    from pyspark.sql import SparkSession

    url = embedded_url(settings)
    # create(), not getOrCreate(): pyspark's getOrCreate returns whatever Connect session this
    # process opened first, whatever its URL (a JVM Connect session would silently stand in).
    return _builder_with_conf(SparkSession.builder.remote(url), settings).create()


def _connect_session(settings: Settings, url: str) -> SparkSession:
    from pyspark.sql import SparkSession

    try:
        builder = _builder_with_conf(SparkSession.builder.remote(url), settings)
        return builder.create()  # a session of exactly this URL (see _embedded_session)
    except Exception as exc:  # pyspark raises several types for an unreachable server
        raise EngineError(f"cannot open a Spark Connect session at {url}: {exc}") from exc


def _classic_session(settings: Settings) -> SparkSession:
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter (the venv that has xgboost, pandas, ...).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.engine.app_name)
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):
        builder = builder.master(settings.engine.master)
        for key, value in CLASSIC_LOCAL_CONF.items():
            builder = builder.config(key, value)
        jars = _local_delta_jars()
        if jars:  # this process launches the JVM: the jars of `make jars` join its classpath
            builder = builder.config("spark.jars", ",".join(jars))
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    session = _builder_with_conf(builder, settings).getOrCreate()
    check_delta_available(session)
    return session


# `make jars` puts the Delta jars here (deploy/jvm/delta/pom.xml); $CARDSCORE_DELTA_JARS wins.
DELTA_JARS_ENV = "CARDSCORE_DELTA_JARS"
REPO_JAR_FOLDER = Path(__file__).resolve().parents[2] / "deploy" / "jvm" / "lib" / "delta"


def delta_jar_folder() -> Path:
    return Path(os.environ.get(DELTA_JARS_ENV) or REPO_JAR_FOLDER)


def local_delta_jars(folder: Path | None = None) -> list[Path]:
    """The Delta jars of `make jars` (sorted), or [] when the folder holds no delta-spark jar."""
    folder = folder or delta_jar_folder()
    jars = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    return jars if any(j.name.startswith("delta-spark_") for j in jars) else []


def _local_delta_jars() -> list[str]:
    return [str(jar) for jar in local_delta_jars()]


def check_delta_available(spark: SparkSession) -> None:
    """Fail at once, with the fix, when the session cannot read Delta tables."""
    probe = os.path.join(tempfile.gettempdir(), "cardscore-delta-probe-does-not-exist")
    try:
        spark.read.format("delta").load(probe).limit(0).collect()
    except Exception as exc:
        text = str(exc)
        if "DATA_SOURCE_NOT_FOUND" in text or "ClassNotFoundException" in text or (
            "Failed to find data source" in text
        ):
            spark.stop()
            raise EngineError(MISSING_DELTA_MESSAGE) from None
        # Any other error (the probe path does not exist) means the Delta source loaded.
