import pytest
import yaml

from dataprep.curate import CurateConfig
from quality.signals import Bounds
from schemas.config import ConfigError, build_config, load_config, parse_set_option, reference, to_dict


def _write(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_defaults_yaml_and_flags_layer(tmp_path):
    path = _write(tmp_path, {"ingest": {"text_field": "body"}, "thresholds": {"gopher_word_count": {"min": 20}}})
    cfg = load_config(CurateConfig, path, {"ingest.id_field": "doc_id", "spark.partitions": 3})
    assert cfg.ingest.text_field == "body" and cfg.ingest.id_field == "doc_id" and cfg.spark.partitions == 3
    assert cfg.thresholds["gopher_word_count"].min == 20
    assert cfg.thresholds["gopher_word_count"].max == 100_000  # YAML merges into the default bounds
    assert cfg.thresholds["gopher_stop_words"].min == 2   # other rules keep their defaults


def test_null_disables_a_rule(tmp_path):
    cfg = load_config(CurateConfig, _write(tmp_path, {"thresholds": {"c4_curly_bracket": None}}))
    assert "c4_curly_bracket" not in cfg.thresholds


def test_null_from_set_disables_a_rule_and_the_recorded_config_keeps_it_disabled():
    """`--set thresholds.X=null` used to be dropped as "flag not given"; and a report's config rebuilt for
    validation used to merge the default thresholds back, so the disabled rule was checked anyway."""
    from schemas.config import build_config, to_dict

    cfg = load_config(CurateConfig, None, dict([parse_set_option("thresholds.gopher_word_count=null")]))
    assert "gopher_word_count" not in cfg.thresholds and "gopher_stop_words" in cfg.thresholds
    rebuilt = build_config(CurateConfig, to_dict(cfg))
    assert rebuilt.thresholds == cfg.thresholds
    assert build_config(CurateConfig, to_dict(CurateConfig(thresholds={}))).thresholds == {}


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'ingest.txt_field'"):
        load_config(CurateConfig, _write(tmp_path, {"ingest": {"txt_field": "x"}}))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'ingest.max_record_bytes' must be int, got str"):
        load_config(CurateConfig, _write(tmp_path, {"ingest": {"max_record_bytes": "big"}}))
    with pytest.raises(ConfigError, match=r"'signals.c4.apply_line_cleaning' must be bool"):
        load_config(CurateConfig, None, {"signals.c4.apply_line_cleaning": "yes please"})


def test_unknown_score_in_thresholds_is_named():
    cfg = load_config(CurateConfig, None, {"thresholds.gopher_wordcount.min": 3})
    with pytest.raises(ConfigError, match="unknown score 'thresholds.gopher_wordcount'"):
        cfg.validate()


def test_set_option_parses_yaml_values():
    assert parse_set_option("a.b=0.5") == ("a.b", 0.5)
    assert parse_set_option("a=[1, 2]") == ("a", [1, 2])
    with pytest.raises(ConfigError):
        parse_set_option("novalue")


def test_reference_lists_every_leaf():
    keys = [row[0] for row in reference(CurateConfig)]
    assert "ingest.text_field" in keys and "signals.c4.require_terminal_punct" in keys and "thresholds" in keys


def test_set_reaches_a_mapping_entry_whose_name_has_dots():
    """Spark settings are dotted names: `--set spark.conf.spark.ui.enabled=false` sets one entry."""
    cfg = load_config(CurateConfig, None, {"spark.conf.spark.ui.enabled": "false", "spark.partitions": 2})
    assert cfg.spark.conf == {"spark.ui.enabled": "false"} and cfg.spark.partitions == 2


def test_spark_settings_from_set_or_yaml_stay_strings(tmp_path):
    """`--set spark.conf.spark.eventLog.enabled=true` reads YAML `true`; Spark wants the text "true"."""
    overrides = dict(parse_set_option(item) for item in ("spark.conf.spark.eventLog.enabled=true",
                                                         "spark.conf.spark.sql.shuffle.partitions=16"))
    (tmp_path / "c.yaml").write_text("spark:\n  conf:\n    spark.ui.enabled: false\n")
    cfg = load_config(CurateConfig, str(tmp_path / "c.yaml"), overrides)
    assert cfg.spark.conf == {"spark.ui.enabled": "false", "spark.eventLog.enabled": "true",
                              "spark.sql.shuffle.partitions": "16"}
    with pytest.raises(ConfigError, match="'spark.master' must be str"):
        load_config(CurateConfig, None, {"spark.master": 3})


def test_a_threshold_side_set_to_clovers_value_stays_under_a_preset():
    """The loader records which sides a user set, so a side set to exactly clover's default is not mistaken
    for one left unset (fineweb's own is 0.01); a side left follows the preset, or is unbounded where the
    preset has no such rule."""
    cfg = load_config(CurateConfig, None, {"signals.preset": "fineweb",
                                           "thresholds.fineweb_dup_line_char_frac.max": 0.10,
                                           "thresholds.gopher_word_count.max": 100_000,
                                           "thresholds.repeated_ngram_frac.min": 0.0})
    assert cfg.thresholds["fineweb_dup_line_char_frac"] == Bounds(max=0.10)
    assert cfg.thresholds["gopher_word_count"] == Bounds(min=50, max=100_000)
    assert cfg.thresholds["repeated_ngram_frac"] == Bounds(min=0.0)  # fineweb has no such rule: no max
    assert build_config(CurateConfig, to_dict(cfg)).thresholds == cfg.thresholds  # the recorded config means the same
