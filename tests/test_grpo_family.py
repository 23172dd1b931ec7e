"""GRPO's loss family (tasks/algorithms/grpo.py): TRL's options, each validated on load and handed to TRL."""

import dataclasses
import re

import pytest

from tasks.algorithms import grpo
from tasks.config import parse_params
from tasks.errors import ConfigError


def section(**grpo_settings):
    return parse_params({"optimize": {"algorithm": "grpo", "grpo": grpo_settings}}).optimize.grpo


def test_the_loss_types_are_the_installed_trls():
    # TRL's help for loss_type names its supported values; the config offers exactly those.
    from trl import GRPOConfig

    help_text = {f.name: f for f in dataclasses.fields(GRPOConfig)}["loss_type"].metadata["help"]
    supported = help_text.split("Supported values are", 1)[1].split(".")[0]
    assert set(re.findall(r"'(\w+)'", supported)) == set(grpo.LOSS_TYPES)


def test_the_defaults_hand_trl_what_it_used_before():
    # The fields added for the family default to TRL's own defaults (and mask_truncated_completions to the
    # False the online trainers always passed): a params.yaml that sets none of them trains the same run.
    from trl import GRPOConfig

    trl_default = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    ours = grpo.trl_kwargs(section())
    for key in ("epsilon_high", "delta", "importance_sampling_level", "top_entropy_quantile",
                "sapo_temperature_pos", "sapo_temperature_neg"):
        assert ours[key] == trl_default[key], key
    assert ours["mask_truncated_completions"] is False
    assert (ours["loss_type"], ours["scale_rewards"], ours["epsilon"]) == ("dapo", "none", 0.2)


@pytest.mark.parametrize("settings", [
    {"loss_type": "grpo", "importance_sampling_level": "sequence"},                 # GSPO
    {"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True},  # DAPO's recipe
    {"loss_type": "cispo", "epsilon_high": 4.0},
    {"loss_type": "sapo", "sapo_temperature_pos": 0.9, "sapo_temperature_neg": 1.2},
    {"loss_type": "luspo", "importance_sampling_level": "sequence"},
    {"loss_type": "vespo"},
    {"loss_type": "bnpo", "delta": 1.5, "top_entropy_quantile": 0.2},
    {"loss_type": "dr_grpo", "scale_rewards": "none"},
])
def test_each_member_of_the_family_loads_and_trl_takes_its_settings(settings, tmp_path):
    from trl import GRPOConfig

    cfg = section(**settings)
    kwargs = grpo.trl_kwargs(cfg)
    for key, value in settings.items():
        assert kwargs[key] == value
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], per_device_train_batch_size=8,
                      num_generations=8, **kwargs)
    assert (args.loss_type, args.importance_sampling_level) == (cfg.loss_type, cfg.importance_sampling_level)


@pytest.mark.parametrize("settings, key, says", [
    ({"epsilon": 0.2, "epsilon_high": 0.1}, "optimize.grpo.epsilon_high", "below epsilon"),
    ({"loss_type": "cispo"}, "optimize.grpo.epsilon_high", "caps the importance weight"),
    # 1 + epsilon = 1.2: a two-sided clip at 1.1 would cut inside the standard one.
    ({"delta": 1.1}, "optimize.grpo.delta", "greater than 1 + epsilon"),
    ({"delta": 0.9}, "optimize.grpo.delta", "> 1"),
    ({"loss_type": "dapo", "importance_sampling_level": "sequence"}, "optimize.grpo.importance_sampling_level",
     "weights each sequence by its length"),
    ({"loss_type": "luspo"}, "optimize.grpo.importance_sampling_level", "set sequence"),
    ({"loss_type": "vespo", "importance_sampling_level": "sequence"}, "optimize.grpo.importance_sampling_level",
     "set token"),
    ({"loss_type": "dapo", "sapo_temperature_neg": 1.3}, "optimize.grpo.sapo_temperature_neg",
     "read only by loss_type sapo"),
    ({"loss_type": "ppo"}, "optimize.grpo.loss_type", "one of"),
    ({"top_entropy_quantile": 1.5}, "optimize.grpo.top_entropy_quantile", "<= 1"),
])
def test_a_bad_combination_is_refused_on_load_naming_the_key(settings, key, says):
    with pytest.raises(ConfigError) as err:
        section(**settings)
    assert f"{key}: " in str(err.value) and says in str(err.value), str(err.value)
