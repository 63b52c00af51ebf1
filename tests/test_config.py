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
    assert specs["occlusion"] == {"patch_size": 8, "score": "logits"}  # no layer: occlusion takes none


def test_registry_parameters_match_the_constructors():
    import inspect

    from xaipipe import methods

    for name in methods.canonical_names():
        signature = inspect.signature(methods.method_class(name).__init__)
        accepted = tuple(p for p in signature.parameters if p not in ("self", "model"))
        assert accepted == methods.parameters(name), name


def test_only_methods_with_a_target_layer_get_the_configured_layer():
    specs = xconfig.method_specs(config(methods=["gc", "ggc", "sm", "ig", "lp"], model={"layer": "conv4"}))
    assert specs["gradcam"]["layer"] == specs["guidedgradcam"]["layer"] == "conv4"
    for name in ("saliency", "integratedgradients", "limepro"):
        assert "layer" not in specs[name], name
    with pytest.raises(ValueError, match=r"methods\[0\]\.layer: saliency takes no parameter 'layer'; its parameters: score"):
        xconfig.method_specs(config(methods=[{"name": "saliency", "layer": "conv4"}]))


@pytest.mark.parametrize("key", ["ig", "os", "lp", "lc"])
def test_the_renamed_batch_size_of_a_method_names_chunk_size(key):
    with pytest.raises(ValueError, match=rf"methods\[0\]\.batch_size: {key}'s parameter 'batch_size' was renamed to 'chunk_size'"):
        xconfig.method_specs(config(methods=[{"name": key, "batch_size": 32}]))
    assert xconfig.method_specs(config(methods=[{"name": key, "chunk_size": 32}]))


def test_registry_defaults_are_the_constructors_defaults():
    import inspect

    from xaipipe import methods

    for name in methods.canonical_names():
        signature = inspect.signature(methods.method_class(name).__init__)
        defaults = {p.name: p.default for p in signature.parameters.values() if p.name not in ("self", "model")}
        assert defaults == dict(methods.defaults(name)), name
