"""Sections every stage shares: lake, engine, Kafka, Feast, MLflow, logging."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from cardscore.core.config.base import Section


def _stringify(value: object) -> object:
    # YAML and env parsing turn `linger.ms: 5` into an int; Spark and librdkafka want strings.
    if isinstance(value, dict):
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    return value


StrMap = Annotated[dict[str, str], BeforeValidator(_stringify)]


class LakeSettings(Section):
    """Where tables live. Any URI the engine and delta-rs understand (file://, s3://, abfss://)."""

    root: str | None = Field(None, description="Lake root URI; default file://<home>/lake")
    landing: str | None = Field(None, description="Landing-zone URI; default <root>/landing")
    storage_options: StrMap = Field(
        default_factory=dict,
        description="object-store options for delta-rs (table history, vacuum), e.g. AWS_REGION; "
        "credentials as ${env:...} references",
    )


class EngineSettings(Section):
    mode: Literal["embedded", "connect", "classic"] = Field(
        "embedded",
        description="embedded: in-process Sail; connect: any Spark Connect URL; classic: JVM Spark",
    )
    remote: str | None = Field(None, description="Spark Connect URL (sc://host:port); $SPARK_REMOTE wins")
    master: str = Field("local[2]", description="classic mode master when not set by spark-submit")
    app_name: str = "cardscore"
    conf: StrMap = Field(default_factory=dict, description="extra Spark conf for the session")
    host: str = Field("127.0.0.1", description="bind address of embedded and `engine start` servers")
    server_port: int = Field(15002, ge=1, le=65535, description="port of `cardscore engine start`")

    @field_validator("remote")
    @classmethod
    def _remote_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise ValueError("must be a Spark Connect URL starting with sc://")
        return value


class KafkaTopics(Section):
    transactions: str = "cardscore.transactions"
    scores: str = "cardscore.scores"
    dlq: str = "cardscore.transactions.dlq"
    labels: str = Field(
        "cardscore.labels",
        description="fraud label reports (label_event), keyed by card like the transactions; "
        "`cardscore replay` publishes a day's reports interleaved with its transactions",
    )
    fresh_forwards: str = Field(
        "cardscore.fresh.by_terminal",
        description="the streaming fresh-feature pipeline's repartition topic: transactions and "
        "their verdicts re-keyed by terminal by the card step, read by the terminal step",
    )


class KafkaSettings(Section):
    mode: Literal["embedded", "external"] = Field(
        "embedded", description="embedded: the project starts Tansu; external: use client conf"
    )
    client: StrMap = Field(
        default_factory=dict,
        description="librdkafka options shared by producers, consumers and admin "
        "(bootstrap.servers, security.protocol, sasl.*, ssl.*)",
    )
    producer: StrMap = Field(default_factory=dict, description="producer-only options")
    consumer: StrMap = Field(default_factory=dict, description="consumer-only options")
    topics: KafkaTopics = Field(default_factory=KafkaTopics)
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    embedded_port: int = Field(19092, ge=1, le=65535, description="port of the embedded broker")
    jars_dir: str | None = Field(
        None,
        description="Apache Kafka jars of `cardscore broker start --kafka`; default the "
        "repository's deploy/jvm/lib/kafka (`make jars`)",
    )
    jvm_heap: str = Field(
        "512m", pattern=r"^[0-9]+[kKmMgG]$", description="-Xmx of each node of `cardscore broker start --kafka`"
    )
    jvm_options: list[str] = Field(
        default_factory=list,
        description="more JVM options for each node of `cardscore broker start --kafka`, after the "
        "built-in ones (e.g. -XX:TieredStopAtLevel=4 for the full JIT)",
    )



class FeastSettings(Section):
    project: str = "cardscore"
    registry: str | None = Field(None, description="registry path/URI; default <home>/feast/registry.db")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str | None = Field(None, description="default <home>/feast/online.db")
    redis_connection_string: str | None = Field(
        None, description="host:port[,password=...] ; put the password in ${env:...}"
    )


class MlflowSettings(Section):
    tracking_uri: str | None = Field(None, description="default sqlite:///<home>/mlflow/mlflow.db")
    registry_uri: str | None = Field(None, description="default: the tracking URI")
    artifact_location: str | None = Field(None, description="default file://<home>/mlflow/artifacts")
    experiment: str = "cardscore"
    model_name: str = "cardscore-fraud"


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: rich console on a terminal, JSON lines otherwise"
    )
