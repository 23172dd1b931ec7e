"""params.yaml is validated on load; every bad value is reported with its key."""

import subprocess

import pytest
import yaml

from tasks.config import Params, describe, load_params, parse_params
from tasks.errors import ConfigError

from conftest import ROOT


def test_project_params_load_and_match_defaults_types():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.generate.k >= 2 and p.label.source in ("ai", "simulated")


@pytest.mark.parametrize("raw, key", [
    ({"generate": {"temprature": 1.0}}, "generate.temprature"),          # typo: unknown key
    ({"generate": {"temperature": -1}}, "generate.temperature"),          # bound: > 0
    ({"generate": {"k": "four"}}, "generate.k"),                          # type
    ({"generate": {"k": True}}, "generate.k"),                            # bool is not an int here
    ({"label": {"source": "crowd"}}, "label.source"),                     # choices
    ({"label": {"pairs": "best"}}, "label.pairs"),
    ({"truth": {"noise": 0.7}}, "truth.noise"),                           # <= 0.5
    ({"prepare": {"heldout_fraction": 1.0}}, "prepare.heldout_fraction"), # < 1
    ({"bootstrap": {"n_embd": 30, "n_head": 4}}, "bootstrap.n_embd"),     # divisibility
    ({"corpus": {"demo_sentiment": [0.5, 0.6, 0.1]}}, "corpus.demo_sentiment"),
    ({"optimise": {}}, "optimise"),                                       # unknown section
    ({"generate": [1, 2]}, "generate"),                                   # section not a mapping
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as exc:
        parse_params(raw)
    assert key in str(exc.value)


def test_int_is_accepted_where_float_is_expected():
    assert parse_params({"generate": {"temperature": 1}}).generate.temperature == 1.0


def test_every_field_has_help():
    text = describe()
    assert "generate:" in text and "# Sampling temperature." in text
    assert "#  \n" not in text and not any(line.rstrip().endswith("#") for line in text.splitlines())


def test_cli_reports_bad_params_without_traceback(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({"generate": {"max_new_tokens": 0}}))
    out = subprocess.run(["rft", "--params", str(bad), "check-params"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "generate.max_new_tokens: must be >= 1, got 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_or_invalid_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("generate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "p.yaml")
