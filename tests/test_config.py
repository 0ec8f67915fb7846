from __future__ import annotations

import dataclasses

import pytest
import yaml

from dualinpaint.config import Config, ConfigError, config_to_yaml, load_config

PRESETS = ["paper", "picnet", "tiny", "photo", "photo-psnr", "table1/paper", "table1/ce", "table1/gl"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_complete_and_round_trip(name: str) -> None:
    cfg = load_config(name)
    text = config_to_yaml(cfg)
    assert Config.from_dict(yaml.safe_load(text)) == cfg
    # a preset file names every field of every section: nothing is silently defaulted
    from dualinpaint.config import SECTIONS, resolve_config_path

    raw = yaml.safe_load(resolve_config_path(name).read_text())
    for section, klass in SECTIONS.items():
        assert set(raw[section]) == {f.name for f in dataclasses.fields(klass)}, section


def test_config_is_frozen(tiny_cfg: Config) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_cfg.model.ngf = 3  # type: ignore[misc]


def test_overrides_apply_and_type_check(tiny_cfg: Config) -> None:
    cfg = tiny_cfg.with_overrides(["model.ngf=4", "loss.lambda_gp=5", "masks.mix.stroke=0.25"])
    assert cfg.model.ngf == 4 and cfg.loss.lambda_gp == 5.0 and cfg.masks.mix["stroke"] == 0.25
    assert tiny_cfg.model.ngf == 8  # the original is untouched


def test_scientific_notation_without_a_dot_is_a_number(tmp_path) -> None:
    """PyYAML reads ``3e-5`` (YAML 1.1 wants ``3.0e-5``) as a string; float fields take it as a number,
    from --set and from a file, and a non-number is still refused."""
    cfg = load_config("tiny").with_overrides(["optim.lr_g=3e-5", "optim.lr_d=2E-4", "loss.lambda_gp=1e1"])
    assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.loss.lambda_gp) == (3e-5, 2e-4, 10.0)
    p = tmp_path / "c.yaml"
    p.write_text("optim: {lr_g: 5e-5}\n")
    assert load_config(p).optim.lr_g == 5e-5
    with pytest.raises(ConfigError, match="must be a number"):
        load_config("tiny").with_overrides(["optim.lr_g=3e-5x"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config("tiny").with_overrides(["model.ngf=1e1"])  # an integer field takes no exponent


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("model.ngff=3", "unknown config key 'model.ngff'"),
        ("modle.ngf=3", "unknown config section 'modle'"),
        ("model.ngf=abc", "model.ngf='abc' must be an integer"),
        ("model.ngf=0", "model.ngf=0 must be > 0"),
        ("loss.gan_mode=wgan-gp", "loss.gan_mode='wgan-gp' is not one of"),
        ("model.disc_strides=[2,2,3,1,1]", "model.disc_strides"),
        ("model.upsample=bilinear", "model.upsample='bilinear' is not one of deconv, resize"),
        ("model.share_trunk=maybe", "must be true or false"),
        ("data.size=24", "multiple of the network stride 16"),
        ("optim.beta1=1.5", "optim.beta1=1.5"),
        ("ngf", "not of the form section.key=value"),
        ("masks.mix.blob=1", "masks.mix.blob: unknown mask kind"),
    ],
)
def test_bad_values_name_the_field(tiny_cfg: Config, override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        tiny_cfg.with_overrides([override])
    assert fragment in str(err.value)


def test_missing_config_file_lists_presets() -> None:
    with pytest.raises(ConfigError, match="presets: .*tiny"):
        load_config("no_such_preset")


def test_yaml_file_with_unknown_section(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model: {ngf: 8}\nextra: {a: 1}\n")
    with pytest.raises(ConfigError, match="unknown config section"):
        load_config(p)


def test_partial_yaml_file_uses_defaults(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model: {ngf: 16}\n")
    assert load_config(p).model.ngf == 16


def test_config_paths_named_in_the_readme_load_from_the_repository_root() -> None:
    """`configs/NAME.yaml` in the README is a real path from a checkout's root (the presets' folder)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    named = set(re.findall(r"`(configs/[\w/.-]+\.yaml)`", (root / "README.md").read_text()))
    assert named, "the README names no configs/*.yaml file"
    for rel in sorted(named):
        assert (root / rel).is_file(), rel
        assert load_config(root / rel) == load_config(rel.removeprefix("configs/").removesuffix(".yaml"))
