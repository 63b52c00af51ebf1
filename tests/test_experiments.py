"""The experiments table: every variant with its full parameters and the model's checksum."""

import hashlib
import json

import pytest

from xaipipe import config as xconfig
from xaipipe import experiments


def test_experiments_list_each_variant_with_its_parameters_and_the_models_sha256(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not really a model, but bytes to hash")
    checksum = tmp_path / "model.sha256"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()  # as sha256sum writes it
    checksum.write_text(f"{digest}  {model}\n")
    config = {
        "methods": ["gc", {"name": "os", "stride": 4, "sweep": {"patch_size": [8, 16]}}],
        "model": {"layer": "conv4"},
        "score": "logits",
    }
    variants = {
        label: {"method": v.method, "params": v.params} for label, v in xconfig.method_variants(config).items()
    }
    out = tmp_path / "experiments.tsv"
    experiments.write_experiments(
        experiments.experiment_rows("model", str(model), checksum, variants, "results/heatmaps"), out
    )
    rows = experiments.read_experiments(out)
    assert [(r["variant"], r["method"], r["heatmaps"]) for r in rows] == [
        ("gradcam", "gradcam", "results/heatmaps/gradcam"),
        ("occlusion-patch_size-8", "occlusion", "results/heatmaps/occlusion-patch_size-8"),
        ("occlusion-patch_size-16", "occlusion", "results/heatmaps/occlusion-patch_size-16"),
    ]
    assert json.loads(rows[0]["parameters"]) == {"layer": "conv4", "score": "logits"}
    assert json.loads(rows[2]["parameters"]) == {"patch_size": 16, "score": "logits", "stride": 4}
    assert {r["model_sha256"] for r in rows} == {digest}
    assert {r["model"] for r in rows} == {"model"}


def test_a_checksum_file_without_a_sha256_is_named(tmp_path):
    checksum = tmp_path / "model.sha256"
    checksum.write_text("")
    with pytest.raises(ValueError, match="model.sha256: holds no sha256"):
        experiments.experiment_rows("model", "m.keras", checksum, {}, "results/heatmaps")
