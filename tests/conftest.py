import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A folder in which the pipeline ran on a small demo with Grad-CAM (4 shards)."""
    from pipeline_runs import CONFIG, snakemake

    workdir = tmp_path_factory.mktemp("pipeline")
    result = snakemake(workdir, CONFIG)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


@pytest.fixture(scope="session")
def all_methods_run(demo_run):
    """The same demo images and model, explained by all nine methods (output folder all_methods/)."""
    from pipeline_runs import ALL_METHODS_CONFIG, snakemake

    result = snakemake(demo_run, ALL_METHODS_CONFIG)
    assert result.returncode == 0, result.stderr[-4000:]
    return demo_run / "all_methods"
