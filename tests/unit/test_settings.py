"""Settings (flotilla.settings): defaults < YAML file < FLOTILLA_* variables < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla.settings import Settings, SettingsError, load_settings, to_environment


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flotilla.yaml"
    path.write_text(text)
    return path


def test_without_file_variables_or_overrides_the_defaults_apply():
    settings = load_settings(environ={})

    assert settings == Settings()
    assert settings.data_dir == ".flotilla"
    assert settings.kafka.bootstrap == ""
    assert settings.kafka.topic_prefix == "flotilla."
    assert settings.api.port == 50051
    assert settings.scheduler.lease_timeout_seconds == 30.0
    assert settings.scheduler.resources == ("cpu", "memory")


def test_variables_that_are_not_flotillas_are_ignored():
    assert load_settings(environ={"PATH": "/bin", "API_PORT": "1", "FLOTILLAAPI_PORT": "2"}) == Settings()


def test_the_yaml_file_overrides_the_defaults(tmp_path):
    path = write_config(
        tmp_path,
        "data_dir: /srv/flotilla\n"
        "kafka:\n  bootstrap: broker:9092\n  partitions: 8\n"
        "scheduler:\n  interval_seconds: 0.5\n  resources: [cpu, memory, nvidia.com/gpu]\n",
    )

    settings = load_settings(path, environ={})

    assert settings.data_dir == "/srv/flotilla"
    assert settings.kafka.bootstrap == "broker:9092"
    assert settings.kafka.partitions == 8
    assert settings.scheduler.interval_seconds == 0.5
    assert settings.scheduler.resources == ("cpu", "memory", "nvidia.com/gpu")
    assert settings.api.port == Settings().api.port


def test_an_empty_yaml_file_leaves_the_defaults(tmp_path):
    assert load_settings(write_config(tmp_path, ""), environ={}) == Settings()


def test_a_flotilla_variable_overrides_the_file(tmp_path):
    path = write_config(tmp_path, "api:\n  port: 6000\nkafka:\n  partitions: 8\n")

    settings = load_settings(path, environ={"FLOTILLA_API_PORT": "7000"})

    assert settings.api.port == 7000
    assert settings.kafka.partitions == 8


def test_variables_name_a_section_and_a_field_with_underscores():
    settings = load_settings(
        environ={
            "FLOTILLA_SCHEDULER_INTERVAL_SECONDS": "2.5",
            "FLOTILLA_KAFKA_TOPIC_PREFIX": "test.",
            "FLOTILLA_DATA_DIR": "/tmp/flotilla-data",
            "FLOTILLA_LOG_LEVEL": "debug",
        }
    )

    assert settings.scheduler.interval_seconds == 2.5
    assert settings.kafka.topic_prefix == "test."
    assert settings.data_dir == "/tmp/flotilla-data"
    assert settings.log_level == "debug"


def test_explicit_overrides_win_over_variables_and_the_file(tmp_path):
    path = write_config(tmp_path, "api:\n  port: 6000\n")

    settings = load_settings(
        path,
        overrides={"api": {"port": 8000}, "data_dir": "/override"},
        environ={"FLOTILLA_API_PORT": "7000", "FLOTILLA_DATA_DIR": "/from-env"},
    )

    assert settings.api.port == 8000
    assert settings.data_dir == "/override"


def test_an_unknown_key_in_the_file_is_refused_naming_it(tmp_path):
    path = write_config(tmp_path, "kafka:\n  bootstrapp: broker:9092\n")

    with pytest.raises(SettingsError, match="kafka.bootstrapp") as caught:
        load_settings(path, environ={})

    assert caught.value.name == "kafka.bootstrapp"


def test_an_unknown_section_in_the_file_is_refused_naming_it(tmp_path):
    with pytest.raises(SettingsError, match="shceduler"):
        load_settings(write_config(tmp_path, "shceduler:\n  interval_seconds: 1\n"), environ={})


def test_a_section_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="kafka"):
        load_settings(write_config(tmp_path, "kafka: broker:9092\n"), environ={})


def test_a_file_that_is_not_a_yaml_mapping_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="--config"):
        load_settings(write_config(tmp_path, "- a\n- b\n"), environ={})


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="--config"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_a_non_numeric_port_variable_is_refused_naming_the_variable():
    with pytest.raises(SettingsError, match="FLOTILLA_API_PORT") as caught:
        load_settings(environ={"FLOTILLA_API_PORT": "fifty"})

    assert caught.value.value == "fifty"
    assert "api.port" in str(caught.value)


def test_an_unknown_flotilla_variable_is_refused_naming_the_variable():
    with pytest.raises(SettingsError, match="FLOTILLA_KAFKA_BOOTSTRAPP"):
        load_settings(environ={"FLOTILLA_KAFKA_BOOTSTRAPP": "broker:9092"})


def test_a_non_numeric_value_in_the_file_is_refused_naming_the_setting(tmp_path):
    with pytest.raises(SettingsError, match="kafka.partitions"):
        load_settings(write_config(tmp_path, "kafka:\n  partitions: many\n"), environ={})


def test_a_tuple_setting_is_read_from_a_comma_separated_variable():
    settings = load_settings(environ={"FLOTILLA_SCHEDULER_RESOURCES": "cpu, memory,,nvidia.com/gpu "})

    assert settings.scheduler.resources == ("cpu", "memory", "nvidia.com/gpu")


def test_to_environment_then_load_settings_reproduces_the_settings(tmp_path):
    original = load_settings(
        overrides={
            "data_dir": "/srv/flotilla",
            "log_level": "debug",
            "kafka": {"bootstrap": "a:9092,b:9092", "partitions": 12, "topic_prefix": "t."},
            "postgres": {"dsn": "postgresql://u@h:5432/db"},
            "api": {"host": "0.0.0.0", "port": 6001},
            "scheduler": {"interval_seconds": 0.25, "resources": ("cpu", "nvidia.com/gpu")},
            "executor": {"id": "exec-z", "pool": "gpu", "cpu": "1500m", "memory": "2Gi", "work_dir": "/w"},
        },
        environ={},
    )
    assert original != Settings()

    assert load_settings(environ=to_environment(original)) == original


def test_to_environment_round_trips_the_defaults():
    original = Settings()

    assert load_settings(environ=to_environment(original)) == original


def test_to_environment_round_trips_an_empty_tuple():
    original = load_settings(overrides={"scheduler": {"resources": ()}}, environ={})

    assert load_settings(environ=to_environment(original)).scheduler.resources == ()


def test_topic_names_carry_the_prefix():
    settings = load_settings(environ={"FLOTILLA_KAFKA_TOPIC_PREFIX": "x."})

    assert settings.topic("events") == "x.events"
