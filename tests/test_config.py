from pathlib import Path

import pytest

from xaipipe import config as xconfig
from xaipipe.samples import SampleSheet


def config(**changes):
    base = {
        "methods": ["gradcam"],
        "model": {"layer": None},
        "score": "logits",
        "classes": [],
        "demo": {"build": False},
    }
    return {**base, **changes}


def test_method_entries_take_defaults_from_the_config():
    specs = xconfig.method_specs(config(methods=["gc"], model={"layer": "conv4"}))
    assert specs == {"gradcam": {"layer": "conv4", "score": "logits"}}
    specs = xconfig.method_specs(config(methods=[{"name": "GradCAM", "score": "probabilities"}]))
    assert specs == {"gradcam": {"layer": None, "score": "probabilities"}}


def test_unknown_and_duplicate_methods_are_named():
    with pytest.raises(ValueError, match=r"methods\[1\]: unknown XAI method 'gradkam'; valid keys: gradcam"):
        xconfig.method_specs(config(methods=["gradcam", "gradkam"]))
    with pytest.raises(ValueError, match=r"methods\[1\]: method 'gradcam' is listed twice"):
        xconfig.method_specs(config(methods=["gradcam", "gc"]))


def test_overlay_names_per_shard():
    sheet = SampleSheet(("a/1.png", "a/2.png", "b/3.png"))
    assert xconfig.overlay_names(sheet, "00000", 2, None) == ["a.1.png", "a.2.png"]
    assert xconfig.overlay_names(sheet, "00001", 2, 2) == ["b.3.class_0.png", "b.3.class_1.png"]


def test_all_targets_need_the_class_count():
    sheet = SampleSheet(("x.png",))
    with pytest.raises(ValueError, match="targets"):
        xconfig.class_count(config(), sheet)
    assert xconfig.class_count(config(classes=["a", "b", "c"]), sheet) == 3


def test_config_errors_name_nested_keys():
    schema = str(Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml")
    problems = xconfig.config_errors({"render": {"alpha": 2}, "shard_size": 0, "methods": []}, schema)
    assert "config key methods: [] should be non-empty" in problems
    assert "config key render.alpha: 2 is greater than the maximum of 1" in problems
    assert "config key shard_size: 0 is less than the minimum of 1" in problems


def test_unknown_method_parameters_are_named():
    with pytest.raises(ValueError, match=r"methods\[0\]\.step: ig takes no parameter 'step'; its parameters: .*steps"):
        xconfig.method_specs(config(methods=[{"name": "ig", "step": 10}]))
    specs = xconfig.method_specs(config(methods=[{"name": "os", "patch_size": 8}]))
    assert specs["occlusion"] == {"patch_size": 8, "layer": None, "score": "logits"}


def test_registry_parameters_match_the_constructors():
    import inspect

    from xaipipe import methods

    for name in methods.canonical_names():
        signature = inspect.signature(methods.method_class(name).__init__)
        accepted = tuple(p for p in signature.parameters if p not in ("self", "model"))
        assert accepted == methods.parameters(name), name
