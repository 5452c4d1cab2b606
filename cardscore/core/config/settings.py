"""The root settings object and the locations derived from it."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from cardscore.core.config.base import Section
from cardscore.core.config.core import (
    EngineSettings,
    FeastSettings,
    KafkaSettings,
    LakeSettings,
    LoggingSettings,
    MlflowSettings,
)
from cardscore.core.config.features import FeaturesSettings
from cardscore.core.config.ingest import IngestSettings
from cardscore.core.config.monitoring import MonitoringSettings
from cardscore.core.config.pipeline import PipelineSettings
from cardscore.core.config.release import ReleaseSettings
from cardscore.core.config.scoring import ScoringSettings
from cardscore.core.config.secrets import redact
from cardscore.core.config.serving import ServingSettings
from cardscore.core.config.simulator import SimulatorSettings
from cardscore.core.config.streaming import FreshStreamSettings, StreamingSettings
from cardscore.core.config.training import HANDBOOK_TRAIN_OFFSET_DAYS, TrainingSettings


class Settings(Section):
    profile: str = Field("local", description="a label for the profile: local, cluster, ...")
    home: str = Field(
        ".cardscore",
        description="workspace for local state (lake, MLflow, Feast, pid and log files); "
        "relative paths are taken from the config file's folder, or the working directory",
    )
    base_dir: str = Field(default_factory=lambda: str(Path.cwd()), exclude=True)

    lake: LakeSettings = Field(default_factory=LakeSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    feast: FeastSettings = Field(default_factory=FeastSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    streaming: StreamingSettings = Field(default_factory=StreamingSettings)
    fresh_stream: FreshStreamSettings = Field(default_factory=FreshStreamSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    release: ReleaseSettings = Field(default_factory=ReleaseSettings)

    @model_validator(mode="after")
    def _protocol_in_the_world(self) -> Settings:
        """An unset first training day is placed in the configured world, where the handbook
        puts it in its own: a world on another calendar gets the same protocol, not a date
        outside it."""
        protocol = self.training.protocol
        if protocol.train_start is None:
            protocol.train_start = self.simulator.start_date + timedelta(days=HANDBOOK_TRAIN_OFFSET_DAYS)
        return self

    # ---- derived locations (absolute; Sail resolves relative paths against its own cwd) ----

    @property
    def home_path(self) -> Path:
        home = Path(os.path.expanduser(self.home))
        return home if home.is_absolute() else (Path(self.base_dir) / home).resolve()

    @property
    def run_dir(self) -> Path:
        """pid and log files of the long-running local services."""
        return self.home_path / "run"

    @property
    def lake_root(self) -> str:
        return to_uri(self.lake.root, self.base_dir) or (self.home_path / "lake").as_uri()

    @property
    def landing_root(self) -> str:
        return to_uri(self.lake.landing, self.base_dir) or join_uri(self.lake_root, "landing")

    @property
    def kafka_bootstrap(self) -> str:
        if "bootstrap.servers" in self.kafka.client:
            return self.kafka.client["bootstrap.servers"]
        if self.kafka.mode == "embedded":
            return f"127.0.0.1:{self.kafka.embedded_port}"
        raise ValueError("kafka.client.bootstrap.servers must be set when kafka.mode is external")

    def kafka_conf(self, role: str = "client") -> dict[str, str]:
        """librdkafka configuration for a role: client (admin), producer or consumer."""
        conf = dict(self.kafka.client)
        conf["bootstrap.servers"] = self.kafka_bootstrap
        if role == "producer":
            conf.update(self.kafka.producer)
        elif role == "consumer":
            conf.update(self.kafka.consumer)
        elif role != "client":
            raise ValueError(f"unknown Kafka role {role!r}")
        return conf

    @property
    def feast_registry(self) -> str:
        return self.feast.registry or str(self.home_path / "feast" / "registry.db")

    @property
    def feast_sqlite_path(self) -> str:
        return self.feast.sqlite_path or str(self.home_path / "feast" / "online.db")

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.home_path / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_registry_uri(self) -> str:
        return self.mlflow.registry_uri or self.mlflow_tracking_uri

    @property
    def mlflow_artifact_location(self) -> str:
        return to_uri(self.mlflow.artifact_location, self.base_dir) or (
            self.home_path / "mlflow" / "artifacts"
        ).as_uri()

    def redacted(self) -> dict[str, Any]:
        """Settings as plain data with every secret replaced by `***`: the only printable form."""
        data = self.model_dump(mode="json")
        data["derived"] = {
            "home": str(self.home_path),
            "lake_root": self.lake_root,
            "landing_root": self.landing_root,
            "feast_registry": self.feast_registry,
            "mlflow_tracking_uri": self.mlflow_tracking_uri,
        }
        return redact(data)


def join_uri(base: str, *parts: str) -> str:
    """Join path segments onto a URI or path without collapsing the scheme's `//`."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def to_uri(value: str | None, base_dir: str | None = None) -> str | None:
    """A plain local path becomes an absolute file:// URI (relative to `base_dir`, default the
    working directory); URIs pass through unchanged."""
    if value is None:
        return None
    if "://" in value:
        return value.rstrip("/")
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = Path(base_dir or os.getcwd()) / path
    return path.resolve().as_uri()
