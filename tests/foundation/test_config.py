"""Configuration: defaults, file values, environment overrides, clear errors, no leaked secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardscore.core.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cardscore.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_local_profile_with_absolute_locations(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"home": str(tmp_path / "h")})
    assert settings.profile == "local"
    assert settings.engine.mode == "embedded"
    assert settings.lake_root == (tmp_path / "h" / "lake").as_uri()
    assert settings.landing_root == (tmp_path / "h" / "lake" / "landing").as_uri()
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow' / 'mlflow.db'}"
    assert settings.kafka_conf()["bootstrap.servers"] == "127.0.0.1:19092"


def test_file_values_and_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "home: ws\nlake:\n  root: data/lake\nkafka:\n  partitions: 6\n")
    settings = load_settings(path, environ={})
    assert settings.home_path == tmp_path / "ws"
    assert settings.lake_root == (tmp_path / "data" / "lake").as_uri()
    assert settings.kafka.partitions == 6


def test_environment_overrides_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  partitions: 6\n  client:\n    bootstrap.servers: file:9092\n")
    env = {
        "CARDSCORE__KAFKA__PARTITIONS": "12",
        "CARDSCORE__KAFKA__CLIENT__BOOTSTRAP_SERVERS": "env-broker:9093",
        "CARDSCORE__KAFKA__CLIENT__SECURITY_PROTOCOL": "SASL_SSL",
        "CARDSCORE__ENGINE__CONF__spark.sql.shuffle.partitions": "4",
    }
    settings = load_settings(path, environ=env)
    assert settings.kafka.partitions == 12
    assert settings.kafka_conf("consumer")["bootstrap.servers"] == "env-broker:9093"
    assert settings.kafka.client["security.protocol"] == "SASL_SSL"
    assert settings.engine.conf == {"spark.sql.shuffle.partitions": "4"}


def test_unknown_keys_are_errors_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  partitons: 6\n")
    with pytest.raises(ConfigError, match=r"kafka\.partitons: unknown key"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"engine\.colour: unknown key"):
        load_settings(environ={"CARDSCORE__ENGINE__COLOUR": "red"})


def test_bad_values_are_errors_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kafka\.partitions"):
        load_settings(write(tmp_path, "kafka:\n  partitions: zero\n"), environ={})
    with pytest.raises(ConfigError, match=r"engine\.mode"):
        load_settings(environ={"CARDSCORE__ENGINE__MODE": "turbo"})
    with pytest.raises(ConfigError, match=r"engine\.remote.*sc://"):
        load_settings(environ={"CARDSCORE__ENGINE__REMOTE": "http://x"})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "kafka: [unclosed\n"), environ={})


def test_secrets_come_only_from_the_environment_or_a_secrets_file(tmp_path: Path) -> None:
    literal = write(tmp_path, "kafka:\n  client:\n    sasl.password: hunter2\n")
    with pytest.raises(ConfigError, match=r"kafka\.client\.sasl\.password.*must not be written"):
        load_settings(literal, environ={})

    ref = write(tmp_path, "kafka:\n  client:\n    sasl.password: ${env:KAFKA_PW}\n")
    with pytest.raises(ConfigError, match="KAFKA_PW"):
        load_settings(ref, environ={})
    assert load_settings(ref, environ={"KAFKA_PW": "from-env"}).kafka.client["sasl.password"] == "from-env"

    secrets = tmp_path / "outside" / "secrets.env"
    secrets.parent.mkdir()
    secrets.write_text("# cardscore secrets\nKAFKA_PW='from-file'\n")
    settings = load_settings(ref, environ={"CARDSCORE_SECRETS_FILE": str(secrets)})
    assert settings.kafka.client["sasl.password"] == "from-file"


def test_redacted_view_never_contains_secret_values(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "kafka:\n  client:\n    sasl.password: ${env:KAFKA_PW}\n    sasl.username: svc\n"
        "feast:\n  online_store: redis\n  redis_connection_string: redis://svc:${env:X}@h:6379\n",
    )
    settings = load_settings(
        ref,
        environ={"KAFKA_PW": "s3cr3t-value", "X": "redispw9", "CARDSCORE__MLFLOW__TRACKING_URI": "https://u:pw123@mlflow:5000"},
    )
    shown = json.dumps(settings.redacted())
    assert "s3cr3t-value" not in shown and "pw123" not in shown and "redispw9" not in shown
    assert '"sasl.username": "svc"' in shown
    assert '"sasl.password": "***"' in shown


def test_example_profiles_in_the_repo_are_valid() -> None:
    conf = Path(__file__).resolve().parents[2] / "conf"
    local = load_settings(conf / "local.yaml", environ={})
    assert local.profile == "local" and local.engine.mode == "embedded"
    cluster = load_settings(
        conf / "cluster.example.yaml",
        environ={"KAFKA_SASL_PASSWORD": "x", "REDIS_PASSWORD": "y", "SPARK_CONNECT_TOKEN": "t"},
    )
    assert cluster.profile == "cluster"
    assert cluster.kafka.mode == "external"
    assert cluster.lake_root.startswith("s3://")
