"""The config is documented once, in its schema; config/README.md and README.md's table follow from it."""

import copy
import re
import shutil

import yaml

from xaipipe import configdoc

SCHEMA = yaml.safe_load((configdoc.ROOT / configdoc.SCHEMA).read_text())


def properties(node, prefix="", in_items=False):
    """(dotted key, schema, inside a list item) for every property anywhere in the schema."""
    if isinstance(node, list):
        for sub in node:
            yield from properties(sub, prefix, in_items)
        return
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        yield prefix + name, sub, in_items
        yield from properties(sub, prefix + name + ".", in_items)
    for word, sub in node.items():
        if word == "items":
            yield from properties(sub, prefix[:-1] + "[].", True)
        elif word == "additionalProperties":  # entries by name (models): defaults as in list items
            yield from properties(sub, prefix + "<name>.", True)
        elif word != "properties":
            yield from properties(sub, prefix, in_items)


def table_keys(text):
    return re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE)


def test_generated_docs_match_the_schema():
    assert configdoc.main(["--check"]) == 0, "run python -m xaipipe.configdoc"


def test_every_key_has_a_description_and_a_default():
    keys = list(properties(SCHEMA))
    # by hand: 16 top-level, demo 4, data 9, model 3, preprocessing 7 + 1, methods[] 7, render 6, resources 3,
    # evaluation 7 + bootstrap 2, models.<name> 4
    assert len(keys) == 72
    for key, sub, in_items in keys:
        assert sub.get("description", "").strip(), f"{key} has no description"
        if in_items:
            # validate() would write a default into every list entry (and fail on string entries)
            assert "default" not in sub, f"{key}: use x-default inside list items"
            assert sub.get("x-default"), f"{key} has no x-default"
        else:
            assert "default" in sub, f"{key} has no default"


def test_the_tables_list_every_key_once():
    keys = [key for key, _, _ in properties(SCHEMA)]
    assert [key for key, _ in configdoc.keys(SCHEMA)] == keys
    readme = (configdoc.ROOT / configdoc.README).read_text()
    region = readme[readme.index(configdoc.BEGIN) : readme.index(configdoc.END)]
    for text in (region, (configdoc.ROOT / configdoc.CONFIG_README).read_text()):
        assert table_keys(text) == keys


def test_check_names_what_is_stale(tmp_path):
    for name in (configdoc.SCHEMA, configdoc.CONFIG_README, configdoc.README):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(configdoc.ROOT / name, tmp_path / name)
    assert configdoc.stale(configdoc.expected(tmp_path)) == []
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["render"]["properties"]["alpha"]["default"] = 0.5
    (tmp_path / configdoc.SCHEMA).write_text(yaml.safe_dump(schema))
    texts = configdoc.expected(tmp_path)
    assert configdoc.stale(texts) == [tmp_path / configdoc.CONFIG_README, tmp_path / configdoc.README]
    assert "| `render.alpha` | `0.5` |" in texts[tmp_path / configdoc.README]
    readme = (tmp_path / configdoc.README).read_text()
    outside = readme.replace(readme[readme.index(configdoc.BEGIN) : readme.index(configdoc.END)], "")
    new = texts[tmp_path / configdoc.README]
    assert new.replace(new[new.index(configdoc.BEGIN) : new.index(configdoc.END)], "") == outside


def test_validation_fills_no_list_entry():
    from snakemake.utils import validate

    config = {
        "methods": ["gradcam", {"name": "saliency"}],
        "preprocessing": {"subfunctions": [{"name": "crop", "shape": [8, 8]}]},
    }
    validate(config, str(configdoc.ROOT / configdoc.SCHEMA))
    assert config["methods"] == ["gradcam", {"name": "saliency"}]
    assert config["preprocessing"]["subfunctions"] == [{"name": "crop", "shape": [8, 8]}]
    assert config["resources"] == {"gpu": False, "threads": 1, "runtime_scale": 1.0}
