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
    with pytest.raises(ValueError, match=r"methods\[1\]: label 'gradcam' is taken by methods\[0\] too; give each a different label"):
        xconfig.method_specs(config(methods=["gradcam", "gc"]))


def test_variants_of_one_method_by_label():
    variants = xconfig.method_variants(
        config(methods=["gc", {"name": "gradcam", "label": "gc_early", "layer": "conv1"}], model={"layer": "conv4"})
    )
    assert [(v.label, v.method, v.params, v.entry) for v in variants.values()] == [
        ("gradcam", "gradcam", {"layer": "conv4", "score": "logits"}, 0),
        ("gc_early", "gradcam", {"layer": "conv1", "score": "logits"}, 1),
    ]


def test_a_sweep_gives_one_variant_per_combination_in_the_order_written():
    entry = {"name": "os", "stride": 4, "sweep": {"patch_size": [8, 16], "fill": [0.0, 0.5]}}
    variants = xconfig.method_variants(config(methods=[entry]))
    assert list(variants) == [
        "occlusion-patch_size-8-fill-0.0",
        "occlusion-patch_size-8-fill-0.5",
        "occlusion-patch_size-16-fill-0.0",
        "occlusion-patch_size-16-fill-0.5",
    ]
    assert variants["occlusion-patch_size-16-fill-0.5"].params == {
        "stride": 4, "score": "logits", "patch_size": 16, "fill": 0.5
    }
    # a label is the prefix; a template names the swept parameters
    prefixed = xconfig.method_variants(config(methods=[{"name": "ig", "label": "ig", "sweep": {"steps": [4, 32]}}]))
    assert {k: v.params["steps"] for k, v in prefixed.items()} == {"ig-steps-4": 4, "ig-steps-32": 32}
    templated = xconfig.method_variants(config(methods=[{"name": "ig", "label": "ig{steps}x", "sweep": {"steps": [4, 32]}}]))
    assert list(templated) == ["ig4x", "ig32x"]
    # a sweep of a layer: None (the model's default) and a name
    layers = xconfig.method_variants(config(methods=[{"name": "gc", "sweep": {"layer": [None, "conv1"]}}]))
    assert {k: v.params["layer"] for k, v in layers.items()} == {"gradcam-layer-none": None, "gradcam-layer-conv1": "conv1"}


@pytest.mark.parametrize(
    "methods, message",
    [
        (["gc", {"name": "gradcam"}], r"methods\[1\]: label 'gradcam' is taken by methods\[0\] too"),
        (
            [{"name": "os", "label": "o", "sweep": {"patch_size": [4, 8]}}, {"name": "gc", "label": "o-patch_size-8"}],
            r"methods\[1\]: label 'o-patch_size-8' is taken by methods\[0\] too",
        ),
        ([{"name": "os", "label": "o", "sweep": {"patch_size": [4, 8], "stride": [2, 4]}}], None),
        ([{"name": "os", "label": "o{patch_size}", "sweep": {"patch_size": [4, 8], "stride": [2, 4]}}],
         r"methods\[0\]: label 'o4' is taken by methods\[0\] too; use a label template with \{param\}"),
        ([{"name": "os", "sweep": {"steps": [4]}}], r"methods\[0\]\.sweep\.steps: os takes no parameter 'steps'"),
        ([{"name": "os", "sweep": {"patch_size": []}}], r"methods\[0\]\.sweep\.patch_size: a non-empty list"),
        ([{"name": "os", "sweep": {"patch_size": 8}}], r"methods\[0\]\.sweep\.patch_size: a non-empty list"),
        ([{"name": "os", "sweep": {}}], r"methods\[0\]\.sweep: a mapping of parameters"),
        ([{"name": "os", "sweep": {"patch_size": [8, 8]}}], r"methods\[0\]\.sweep\.patch_size: a value is listed twice"),
        ([{"name": "os", "patch_size": 8, "sweep": {"patch_size": [4]}}], r"sweep\.patch_size: 'patch_size' is set and swept"),
        ([{"name": "gc", "label": "a/b"}], r"methods\[0\]: label 'a/b' is no safe folder name"),
        ([{"name": "gc", "label": ".."}], r"label '\.\.' is no safe folder name"),
        ([{"name": "gc", "label": "randomization"}], r"label 'randomization' is reserved"),
        ([{"name": "gc", "sweep": {"layer": ["block 1"]}}], r"label 'gradcam-layer-block 1' is no safe folder name"),
        ([{"name": "os", "label": "o{stride}", "sweep": {"patch_size": [4]}}], r"methods\[0\]\.label: template 'o\{stride\}' names 'stride', which is not swept"),
        ([{"name": "os", "sweep": {"patch_size": [4, 0]}}], r"methods\[0\] \(occlusion-patch_size-0\): patch_size"),
        ([{"name": "sm", "sweep": {"noise": [None, {"kind": "smoothgrad", "samples": 4}]}}],
         r"is no safe folder name.*a swept 'noise' that is a mapping names no folder: list its variants as entries"),
        ([{"name": "os", "label": "O-8"}, {"name": "os", "label": "o-{patch_size}", "sweep": {"patch_size": [8]}}],
         r"methods\[1\]: label 'o-8' is taken by methods\[0\] too as 'O-8' \(they differ in case alone"),
    ],
)
def test_bad_variants_are_named(methods, message):
    if message is None:  # a plain prefix with two swept parameters names both: no collision
        assert len(xconfig.method_variants(config(methods=methods))) == 4
        return
    with pytest.raises(ValueError, match=message):
        xconfig.method_variants(config(methods=methods))


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
    # a list entry that may take several forms (a key or a mapping): the deepest reason, naming its key
    entry = {"name": "os", "sweep": {"patch_size": []}}
    problems = xconfig.config_errors({"methods": ["gc", entry]}, schema)
    assert problems == ["config key methods.1.sweep.patch_size: [] should be non-empty"]


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
        # normalize and precision: the base class's, every method's
        assert (*accepted, "normalize", "precision") == methods.parameters(name), name


def test_only_methods_with_a_target_layer_get_the_configured_layer():
    specs = xconfig.method_specs(config(methods=["gc", "ggc", "sm", "ig", "lp"], model={"layer": "conv4"}))
    assert specs["gradcam"]["layer"] == specs["guidedgradcam"]["layer"] == "conv4"
    for name in ("saliency", "integratedgradients", "limepro"):
        assert "layer" not in specs[name], name
    with pytest.raises(ValueError, match=r"methods\[0\]\.layer: saliency takes no parameter 'layer'; its parameters: score"):
        xconfig.method_specs(config(methods=[{"name": "saliency", "layer": "conv4"}]))


@pytest.mark.parametrize("key", ["ig", "os", "lp", "lc", "scorecam"])
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


def study(**changes):
    base = config(
        output="results",
        model={"path": None, "layer": None},
        preprocessing={"size": [64, 64], "channels": 1, "standardize": "tf"},
    )
    return {**base, **changes}


def test_the_single_model_writes_into_the_output_folder():
    specs = xconfig.model_specs(study(model={"path": "m.keras", "layer": "conv4"}))
    assert list(specs) == ["model"]
    only = specs["model"]
    assert (only.path, only.folder, only.preprocessed) == ("m.keras", "results", "results/preprocessed")
    assert only.variants["gradcam"].params["layer"] == "conv4"


def test_models_get_folders_of_their_own_and_share_equal_preprocessing():
    models = {
        "a": {"path": "a.keras"},
        "b": {"path": "b.keras", "layer": "conv2", "score": "probabilities"},
        "c": {"path": "c.keras", "preprocessing": {"size": [128, 128]}},
        "d": {"path": "d.keras", "preprocessing": {"size": [128, 128], "channels": 1}},
    }
    specs = xconfig.model_specs(study(models=models, methods=["gc", {"name": "sm", "label": "s"}]))
    assert [s.folder for s in specs.values()] == ["results/a", "results/b", "results/c", "results/d"]
    # a and b read the study's shards; c and d (equal to each other) c's
    assert [s.preprocessed for s in specs.values()] == [
        "results/preprocessed", "results/preprocessed", "results/c/preprocessed", "results/c/preprocessed"
    ]
    assert specs["c"].preprocessing == {"size": [128, 128], "channels": 1, "standardize": "tf"}
    assert specs["a"].variants["gradcam"].params == {"layer": None, "score": "logits"}
    assert specs["b"].variants["gradcam"].params == {"layer": "conv2", "score": "probabilities"}
    assert specs["b"].variants["s"].params == {"score": "probabilities"}


def test_a_model_may_ask_for_the_automatic_layer_where_the_config_names_one():
    models = {"named": {"path": "a.keras"}, "auto": {"path": "b.keras", "layer": None}}
    specs = xconfig.model_specs(study(models=models, model={"path": None, "layer": "conv4"}, methods=["gc"]))
    assert specs["named"].variants["gradcam"].params["layer"] == "conv4"
    assert specs["auto"].variants["gradcam"].params["layer"] is None


def families(**changes):
    return [f.labels for f in xconfig.shared_pass_families(xconfig.model_specs(study(**changes)))]


def test_cam_variants_that_agree_on_layer_score_and_precision_share_one_pass():
    methods = [
        "gradcam", "saliency", "gc++", {"name": "hirescam", "normalize": "positive"},  # normalize: each its own
        {"name": "layercam", "label": "lc-conv2", "layer": "conv2"},  # another layer: a family of its own
        {"name": "xgradcam", "label": "xg-conv2", "layer": "conv2"},
        {"name": "gradcam", "label": "gc-noisy", "noise": {"samples": 4}},  # noise: copies of its own, alone
        {"name": "gradcam", "label": "gc-bf16", "precision": "bfloat16"},  # another precision: alone
        {"name": "gradcam", "label": "gc-prob", "score": "probabilities"},  # another score: alone
        "GuidedGradCAM", "scorecam", "eigencam",  # CAMs whose maps need more than A and g: alone
        {"name": "layercam", "label": "lc-f32", "precision": "float32"},  # the default written out: joins
    ]  # fmt: skip
    assert families(model={"path": "m.keras", "layer": None}, methods=methods) == [
        ("gradcam", "gradcam++", "hirescam", "lc-f32"), ("lc-conv2", "xg-conv2")
    ]
    assert xconfig.HeatmapsJob(("gradcam", "gradcam++")).name == "gradcam,gradcam++"  # no label holds a comma
    long = xconfig.HeatmapsJob(tuple(f"gradcam-normalize-{i:0100d}" for i in range(3)))
    assert long.name == f"{long.labels[0]},and-2-more"
    # one method alone, or none of the family's methods: no family
    assert families(model={"path": "m.keras", "layer": None}, methods=["gradcam", "saliency", "os"]) == []


def test_heatmaps_jobs_split_a_shards_variants_as_the_config_says():
    config = study(model={"path": "m.keras", "layer": None}, methods=["gradcam", "saliency", "gc++", "os"])
    specs = xconfig.model_specs(config)
    jobs = {mode: [job.labels for job in xconfig.heatmaps_jobs(specs, mode)] for mode in ("variant", "family", "shard")}
    assert jobs == {
        "variant": [],  # every variant its own job
        "family": [("gradcam", "gradcam++")],  # the CAM family; saliency and occlusion alone
        "shard": [("gradcam", "saliency", "gradcam++", "occlusion")],  # all of them, in the config's order
    }
    one = xconfig.model_specs(study(model={"path": "m.keras", "layer": None}, methods=["saliency"]))
    # one job of every variant per shard, which predicts the shard too: even of one variant
    assert [job.predicts for job in xconfig.heatmaps_jobs(specs, "shard")] == [True]
    assert xconfig.heatmaps_jobs(one, "shard") == [xconfig.HeatmapsJob(("saliency",), predicts=True)]
    assert not any(job.predicts for job in xconfig.heatmaps_jobs(specs, "family"))
    with pytest.raises(ValueError, match="heatmaps_jobs must be one of"):
        xconfig.heatmaps_jobs(specs, "per_shard")


def test_families_hold_in_every_model_of_the_study():
    methods = ["gradcam", "hirescam", {"name": "layercam", "layer": "conv4"}]
    # conv4 is model a's default layer, so there layercam would join; in b (automatic layer) it would not
    models = {"a": {"path": "a.keras", "layer": "conv4"}, "b": {"path": "b.keras"}}
    assert families(models=models, methods=methods) == [("gradcam", "hirescam")]
    assert families(models={"a": models["a"]}, methods=methods) == [("gradcam", "hirescam", "layercam")]
    # a model whose score differs moves all of its variants alike: the families stay
    models["b"]["score"] = "probabilities"
    assert families(models=models, methods=methods) == [("gradcam", "hirescam")]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"models": {"../x": {"path": "a.keras"}}}, r"models\.\.\./x: the name '\.\./x' is no safe folder name"),
        ({"models": {"a b": {"path": "a.keras"}}}, r"models\.a b: the name 'a b' is no safe folder name"),
        ({"models": {"report": {"path": "a.keras"}}}, r"models\.report: the name 'report' is a folder of the study's own"),
        ({"models": {"A": {"path": "a.keras"}, "a": {"path": "b.keras"}}},
         r"models\.a: the name differs from models\.A in case alone"),
        ({"models": {"a": {"path": "a.keras"}}, "model": {"path": "m.keras", "layer": None}},
         r"config keys model\.path and models: set one of them"),
        ({"models": {"a": {"path": "a.keras", "preprocessing": {"sise": [3, 3]}}}},
         r"models\.a\.preprocessing\.sise: no preprocessing key"),
        ({"models": {"a": {"path": "a.keras", "preprocessing": {"size": [8, 8, 8]}}}},
         r"models\.a\.preprocessing\.size: \[8, 8, 8\] has 3 dimensions"),
        ({"models": {"a": {"path": "a.keras"}, "b": {"path": "b.keras", "preprocessing": {"size": [32, 32]}}},
          "methods": [{"name": "os", "patch_size": 48}]},  # fits a's 64x64 input, not b's
         r"methods\[0\] \(os\): patch_size 48 is larger than the model input \[32, 32\]; choose at most 32 "
         r"\(models\.b\.preprocessing\.size\) \(model 'b'\)"),
        ({"models": {"a": {"path": "a.keras"}}, "methods": [{"name": "os", "patch_size": 80}]},  # the study's size
         r"methods\[0\] \(os\): patch_size 80 is larger than the model input \[64, 64\]; choose at most 64 "
         r"\(preprocessing\.size\) \(model 'a'\)"),
    ],
)
def test_bad_models_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        xconfig.model_specs(study(**changes))


def test_demo_models_by_seed():
    assert xconfig.demo_model_seed("out/demo/model-seed7.keras", "out") == 7
    assert xconfig.demo_model_seed("out/demo/model.keras", "out") == -1  # demo.seed
    assert xconfig.demo_model_seed("out/demo/model-seedx.keras", "out") is None
    assert xconfig.demo_model_seed("elsewhere/model-seed7.keras", "out") is None
    demo = {"build": True, "n_per_class": 2}
    models = {"a": {"path": "out/demo/model.keras"}, "b": {"path": "out/demo/model-seed3.keras"}}
    cfg = study(output="out", demo=demo, models=models, data={"images": None})
    xconfig.resolve_data_paths(cfg)  # the models' paths are the demo's: accepted, model.path stays unset
    assert cfg["model"]["path"] is None and cfg["data"]["images"] == "out/demo/images"
    with pytest.raises(ValueError, match=r"models\.b\.path: 'b\.keras', but with demo\.build true"):
        xconfig.resolve_data_paths(study(output="out", demo=demo, models={"b": {"path": "b.keras"}}, data={"images": None}))


def test_max_per_class_keeps_the_first_n_samples_of_each_label_in_sample_order():
    # labels 1, 0, 1, 1, 0, 2, 1: the first two 1s (positions 0, 2), the two 0s (1, 4), the one 2 (5)
    sheet = SampleSheet(tuple(f"s{k}.png" for k in range(7)), (1, 0, 1, 1, 0, 2, 1), ("a", "b", "c"))
    assert xconfig.rendered_samples(sheet, 2) == (True, True, True, False, True, True, False)
    assert xconfig.rendered_samples(sheet, 1) == (True, True, False, False, False, True, False)
    assert xconfig.rendered_samples(sheet, 0) == (False,) * 7
    assert xconfig.rendered_samples(sheet, None) == (True,) * 7
    assert xconfig.rendered_samples(sheet, 9) == (True,) * 7
    # shards of 3: rows within each shard
    kept = xconfig.rendered_samples(sheet, 2)
    assert [xconfig.rendered_rows(kept, s, 3) for s in ("00000", "00001", "00002")] == [[0, 1, 2], [1, 2], []]
    assert xconfig.overlay_names(sheet, "00001", 3, None, ".png", [1, 2]) == ["s4.png", "s5.png"]
    assert xconfig.overlay_names(sheet, "00002", 3, 2, ".png", []) == []
    assert xconfig.overlay_names(sheet, "00000", 3, 2, ".gif", [2]) == ["s2.class_0.gif", "s2.class_1.gif"]
    with pytest.raises(ValueError, match=r"render\.max_per_class: -1"):
        xconfig.rendered_samples(sheet, -1)


def test_max_per_class_without_labels_keeps_the_first_n_samples():
    sheet = SampleSheet(("z.png", "a.png", "m.png", "b.png"))
    assert xconfig.rendered_samples(sheet, 2) == (True, True, False, False)
    assert xconfig.rendered_samples(sheet, 0) == (False,) * 4


def test_max_per_class_follows_class_subfolders_and_a_tables_labels(tmp_path):
    for name in ("b/1.png", "a/3.png", "a/1.png", "b/0.png", "a/2.png", "a/0.png"):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / name).write_bytes(b"")  # found by name; nothing reads them here
    base = {"data": {"images": str(tmp_path / "images"), "samples": None, "class_subfolders": "auto"},
            "preprocessing": {"size": [8, 8]}, "targets": "argmax"}  # fmt: skip
    sheet = xconfig.sample_sheet(config(**base))
    kept = xconfig.rendered_samples(sheet, 2)
    assert [i for i, k in zip(sheet.ids, kept) if k] == ["a/0.png", "a/1.png", "b/0.png", "b/1.png"]
    # a table's order, not sorted: its first two 'x' rows and its first 'y' (and only) row
    (tmp_path / "table.csv").write_text("SAMPLE,CLASS\nq.png,x\np.png,x\nr.png,y\no.png,x\n")
    table = {**base["data"], "samples": str(tmp_path / "table.csv"), "id_column": "SAMPLE", "class_column": "CLASS",
             "class_columns": []}  # fmt: skip
    sheet = xconfig.sample_sheet(config(**{**base, "data": table}, classes=["x", "y"]))
    kept = xconfig.rendered_samples(sheet, 2)
    assert [i for i, k in zip(sheet.ids, kept) if k] == ["q.png", "p.png", "r.png"]


def test_a_tables_mask_column_is_not_taken_for_its_labels(tmp_path):
    # ids and a mask column alone: "class_column: null takes the only other column" took the masks as labels
    (tmp_path / "table.csv").write_text("SAMPLE,MASK\nq.png,masks/q.png\np.png,\n")
    data = {"images": str(tmp_path), "samples": str(tmp_path / "table.csv"), "id_column": "SAMPLE",
            "class_column": None, "class_columns": [], "mask_column": "MASK"}  # fmt: skip
    study = config(data=data, preprocessing={"size": [8, 8]}, targets="argmax", classes=["x", "y"])
    sheet = xconfig.sample_sheet(study)
    assert sheet.ids == ("q.png", "p.png") and sheet.labels is None and sheet.class_names == ("x", "y")


def test_a_sample_table_whose_files_are_missing_names_them_and_the_image_format_to_set(tmp_path):
    # Snakemake's bare MissingInputException listed 'flat/r0', 'flat/b0', with no word of data.image_format
    for name in ("r0.png", "b0.png", "scan.nii.gz"):
        (tmp_path / "flat").mkdir(exist_ok=True)
        (tmp_path / "flat" / name).write_bytes(b"x")
    sheet = SampleSheet(("flat/r0", "flat/b0"))
    config = {"demo": {"build": False}, "data": {"samples": "t.csv", "images": str(tmp_path), "image_format": None}}
    with pytest.raises(ValueError, match=r"data.samples: 2 of the 2 samples have no file: \S+/flat/r0, \S+/flat/b0; "
                                         r"the ids have no extension: set data.image_format \(here 'png'\)"):
        xconfig.check_sample_files(config, sheet)
    xconfig.check_sample_files({**config, "data": {**config["data"], "image_format": "png"}}, sheet)
    with pytest.raises(ValueError, match=r"here 'nii.gz'"):
        xconfig.check_sample_files(config, SampleSheet(("flat/scan",)))
    gone = SampleSheet(("flat/r0.png", "flat/gone.png"))
    with pytest.raises(ValueError, match=r"1 of the 2 samples has no file: \S+/flat/gone.png; check the ids against"):
        xconfig.check_sample_files(config, gone)
    xconfig.check_sample_files({**config, "data": {**config["data"], "samples": None}}, gone)  # found files exist


def test_parameters_whose_maps_would_look_like_evidence_but_are_not_stop_before_any_job():
    # each ran: stride 64 over patches of 8 left rows 8-23 at 0 in every map; one segment or cell made every map
    # constant; smoothgrad with noise null wrote the saliency map under its name
    cases = [
        ({"name": "os", "patch_size": 8, "stride": 64}, r"methods\[0\] \(os\): stride 64 is larger than patch_size 8"),
        ({"name": "os", "stride": 32}, r"stride 32 is larger than patch_size 16"),  # the default patch
        ({"name": "limepro", "segments": 1}, r"\(limepro\): segments 1 makes every map one value"),
        ({"name": "rise", "cells": 1}, r"\(rise\): cells 1 makes every map one value"),
        ({"name": "smoothgrad", "noise": None}, r"\(smoothgrad\): noise null makes smoothgrad the plain saliency map"),
        ({"name": "vargrad", "noise": None}, r"noise null makes vargrad the plain saliency map"),
        # VarGrad of one copy, or of no noise, is all zeros; LIME with fewer samples than segments fit noise
        ({"name": "vargrad", "noise": {"samples": 1}}, r"\(vargrad\): noise.samples 1 with kind vargrad"),
        ({"name": "ig", "noise": {"kind": "vargrad", "sigma": 0}}, r"noise.sigma 0 with kind vargrad"),
        ({"name": "limepro", "num_samples": 8, "segments": 8}, r"num_samples 8 is not above segments 8"),
        ({"name": "limecon", "num_samples": 30}, r"num_samples 30 is not above segments 50"),  # the default
    ]
    for entry, message in cases:
        with pytest.raises(ValueError, match=message):
            xconfig.method_variants(config(methods=[entry]))
    fine = [{"name": "os", "patch_size": 8, "stride": 8}, {"name": "rise", "cells": 2},
            {"name": "vargrad", "noise": {"samples": 2}}, {"name": "smoothgrad", "noise": {"sigma": 0}},
            {"name": "limepro", "num_samples": 51}]  # fmt: skip
    assert len(xconfig.method_variants(config(methods=fine))) == 5
