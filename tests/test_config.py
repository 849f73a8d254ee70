import json

import pytest

from cyclekit.commands._config_args import list_presets, load_preset
from cyclekit.config import Config, ModelConfig, generator_config_for, load_config, set_field
from cyclekit.errors import ConfigError


def test_json_round_trip(tmp_path):
    cfg = Config()
    set_field(cfg, "ngf", 32)
    set_field(cfg, "flip", "false")
    set_field(cfg, "lr", "1e-4")
    cfg.save(tmp_path / "c.json")
    back = load_config(tmp_path / "c.json")
    assert back == cfg and back.model.ngf == 32 and back.data.flip is False and back.train.lr == 1e-4


def test_yaml_config(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  ngf: 16\ntrain:\n  batch_size: 4\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.model.ngf == 16 and cfg.train.batch_size == 4


@pytest.mark.parametrize(
    "doc, needle",
    [
        ({"model": {"ngff": 3}}, "ngff"),
        ({"modle": {}}, "modle"),
        ({"model": {"ngf": "wide"}}, "model.ngf"),
        ({"train": {"batch_size": 1.5}}, "batch_size"),
    ],
)
def test_bad_config_names_the_field(doc, needle):
    with pytest.raises(ConfigError, match=needle):
        Config.from_dict(doc)


@pytest.mark.parametrize(
    "field, value, needle",
    [("batch_size", 0, "--batch-size"), ("generator", "vgg", "--generator"), ("lr", -1.0, "--lr"),
     ("load_size", 100, "--load-size")],
)
def test_validation(field, value, needle):
    cfg = Config()
    set_field(cfg, field, value)
    with pytest.raises(ConfigError, match=needle):
        cfg.validate()


def test_identity_loss_needs_equal_channels():
    cfg = Config()
    set_field(cfg, "in_channels", 1)
    with pytest.raises(ConfigError, match="--lambda-identity 0"):
        cfg.validate()
    set_field(cfg, "lambda_identity", 0)
    cfg.validate()
    set_field(cfg, "residual", True)
    with pytest.raises(ConfigError, match="--residual"):
        cfg.validate()


def test_invalid_json_file(tmp_path):
    (tmp_path / "c.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "c.json")


def test_generator_config_swaps_channels():
    m = ModelConfig(in_channels=1, out_channels=3)
    assert generator_config_for(m, "BtoA").in_channels == 3
    assert generator_config_for(m, "AtoB").in_channels == 1
    with pytest.raises(ConfigError):
        generator_config_for(m, "sideways")


def test_every_preset_loads_and_validates():
    names = list_presets()
    assert {"paper", "keras_genderswap", "tf2_genderswap", "tf1_tutorial", "gia_unet", "keras_gray128"} <= set(names)
    for name in names:
        load_preset(name).validate()
    assert load_preset("gia_unet").train.lambda_identity == 0.9
    assert load_preset("tf2_genderswap").train.lr_step_unit == "step"
    assert load_preset("tf2_genderswap").train.batch_size == 4
    assert load_preset("tf1_tutorial").model.ngf == 32 and load_preset("tf1_tutorial").train.lambda_identity == 0


def test_preset_networks_have_the_seed_parameter_counts():
    from cyclekit.nn import build_discriminator, build_generator, count_parameters

    cfg = load_preset("keras_gray128")
    assert count_parameters(build_generator(cfg.model)) == 14_905_859
    assert count_parameters(build_discriminator(cfg.model, 1)) == 2_764_481
    paper = load_preset("paper")
    assert count_parameters(build_generator(paper.model)) == 11_378_179
    assert count_parameters(build_discriminator(paper.model, 3)) == 2_764_737
    assert json.loads(json.dumps(paper.to_dict())) == paper.to_dict()
