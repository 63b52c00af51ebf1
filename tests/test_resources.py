"""What the workflow's jobs ask a cluster for (xaipipe/resources.py)."""

import math
from pathlib import Path

import pytest

from xaipipe import methods
from xaipipe import resources as xr

SIZE = (224, 224)


def test_memory_grows_with_the_attempt_the_model_and_the_method():
    base = xr.model_job_mem_mb(256, 100, SIZE, 3, 32, "gradcam", {})
    assert xr.model_job_mem_mb(256, 100, SIZE, 3, 32, "gradcam", {}, attempt=2) >= 2 * base - 100
    assert xr.model_job_mem_mb(256, 500, SIZE, 3, 32, "gradcam", {}) > base
    assert xr.model_job_mem_mb(256, 100, SIZE, 3, 32, "limepro", {}) > base  # 256 perturbed copies per call
    assert xr.model_job_mem_mb(1024, 100, SIZE, 3, 32, "gradcam", {}) > base


def test_run_time_grows_with_the_shard_the_model_and_the_method():
    gradcam = xr.model_job_runtime(256, 100, SIZE, "gradcam", {})
    assert xr.model_job_runtime(1024, 100, SIZE, "gradcam", {}) > gradcam
    assert xr.model_job_runtime(256, 400, SIZE, "gradcam", {}) > gradcam
    assert xr.model_job_runtime(256, 100, SIZE, "integratedgradients", {"steps": 50}) > gradcam
    assert xr.model_job_runtime(256, 100, SIZE, "limepro", {"num_samples": 1000}) > 100 * gradcam / 10
    assert xr.model_job_runtime(256, 100, SIZE, "gradcam", {}, attempt=3) >= 3 * gradcam - 1
    assert xr.model_job_runtime(256, 100, SIZE, "gradcam", {}, scale=2.0) >= 2 * gradcam - 1


def test_a_cam_family_costs_one_pass_and_a_share_per_other_member():
    members = [("gradcam", {}), ("gradcam++", {}), ("hirescam", {"normalize": "positive"})]
    family = xr.group_job_runtime(4096, 100, SIZE, members)
    gradcam = xr.model_job_runtime(4096, 100, SIZE, "gradcam", {})
    # one gradient pass (3 passes) x (1 + 2 x 0.25) per sample, against 3 x 3 as three jobs
    per_pass = xr.PASS_SECONDS_PER_MB_MVOX * 100 * math.prod(SIZE) / 1e6
    assert family == math.ceil(xr.FIXED_MINUTES + xr.RUNTIME_MARGIN * 4096 * (xr.SAMPLE_SECONDS + 4.5 * per_pass) / 60)
    assert gradcam < family < 3 * gradcam - 2 * xr.FIXED_MINUTES
    assert xr.group_job_runtime(4096, 100, SIZE, members, targets=2, attempt=2) > 2 * family


def test_a_group_job_costs_its_families_passes_and_every_other_members_own():
    members = [("saliency", {}), ("gradcam", {}), ("occlusion", {"patch_size": 8, "stride": 4}), ("gradcam++", {})]
    group = xr.group_job_runtime(4096, 100, SIZE, members)
    # gradcam + gradcam++ and saliency from one gradient pass (3 passes) x (1 + 0.25 x 2), occlusion's 15 x 15 + 1,
    # one fixed cost for the job
    assert xr.passes_per_sample("saliency", {}, SIZE) == xr.passes_per_sample("gradcam", {}, SIZE) == 3
    passes = 3 * 1.5 + xr.passes_per_sample("occlusion", {"patch_size": 8, "stride": 4}, SIZE)
    per_pass = xr.PASS_SECONDS_PER_MB_MVOX * 100 * math.prod(SIZE) / 1e6
    assert group == math.ceil(xr.FIXED_MINUTES + xr.RUNTIME_MARGIN * 4096 * (xr.SAMPLE_SECONDS + passes * per_pass) / 60)
    alone = sum(xr.model_job_runtime(4096, 100, SIZE, key, params) for key, params in members)
    assert group < alone - 2 * xr.FIXED_MINUTES


def test_occlusion_counts_its_patch_positions():
    assert xr.passes_per_sample("occlusion", {"patch_size": 8, "stride": 4}, (64, 64)) == 15 * 15
    assert xr.passes_per_sample("occlusion", {}, (64, 64)) == 4 * 4


def test_a_missing_model_file_gets_a_size(tmp_path):
    assert xr.model_mb(tmp_path / "not_yet_trained.keras") == xr.UNKNOWN_MODEL_MB
    (tmp_path / "m.keras").write_bytes(b"x" * 2_000_000)
    assert xr.model_mb(tmp_path / "m.keras") == 2.0


def test_light_jobs_are_light():
    assert xr.light_job_mem_mb(256, SIZE, 3) < xr.model_job_mem_mb(256, 100, SIZE, 3, 32)
    assert xr.light_job_runtime(256, SIZE, attempt=2) >= 2 * xr.light_job_runtime(256, SIZE) - 1


def test_fewer_threads_than_the_calibration_ask_for_more_time():
    assert xr.thread_factor(1) == 2.0
    assert xr.thread_factor(2) == 1.0
    assert xr.thread_factor(16) == 1.0  # more threads are not assumed to make a job faster


def test_the_figures_come_from_the_method_registry():
    # occlusion, patch 8 stride 4 on 64x64: starts 0, 4, ..., 56 = 15 per axis
    assert methods.passes_per_sample("os", {"patch_size": 8, "stride": 4}, (64, 64)) == 225
    # its defaults (patch 16, stride = patch) from the registry: 4 per axis, 3 on a 48x48x48 volume
    assert methods.defaults("occlusion")["patch_size"] == 16
    assert xr.passes_per_sample("occlusion", {}, (48, 48, 48)) == 27
    steps = methods.defaults("integratedgradients")["steps"]
    assert xr.passes_per_sample("integratedgradients", {}, SIZE) == methods.GRADIENT_PASS * steps
    assert xr.passes_per_sample("integratedgradients", {"steps": 8}, SIZE) == 3 * 8
    assert xr.passes_per_sample("limecon", {}, SIZE) == methods.defaults("limecon")["num_samples"] == 1000
    for name in ("gradcam", "gradcam++", "guidedgradcam", "saliency", "guidedbackprop"):
        assert xr.passes_per_sample(name, {}, SIZE) == 3


@pytest.mark.parametrize(
    "method, params, rows, activations",
    [
        (None, {}, 32, xr.FORWARD_ACTIVATIONS),
        ("gradcam", {}, 32, xr.GRADIENT_ACTIVATIONS),
        ("saliency", {}, 32, xr.GRADIENT_ACTIVATIONS),
        ("integratedgradients", {}, 64, xr.GRADIENT_ACTIVATIONS),
        ("integratedgradients", {"chunk_size": 16}, 16, xr.GRADIENT_ACTIVATIONS),
        ("occlusion", {}, 256, xr.FORWARD_ACTIVATIONS),
        ("limepro", {"chunk_size": 100}, 100, xr.FORWARD_ACTIVATIONS),
        ("limecon", {}, 256, xr.FORWARD_ACTIVATIONS),
    ],
)
def test_a_model_call_takes_the_batch_or_the_methods_chunk(method, params, rows, activations):
    assert xr.model_chunk(method, params, 32) == (rows, activations)
    if method is not None and "chunk_size" not in params:
        assert rows in (32, methods.defaults(method).get("chunk_size"))
    # memory grows with the chunk by one chunk's activations
    base = xr.model_job_mem_mb(1, 0, SIZE, 3, 32, method, params)
    expected = xr.MODEL_BASE_MB + rows * xr.input_mb(SIZE, 3) * activations + xr.input_mb(SIZE, 3) * xr.SHARD_FACTOR
    assert base == math.ceil(expected / 100) * 100


def test_no_tensorflow_at_parse_time():
    import subprocess
    import sys

    code = "import sys, xaipipe.resources; assert not {'tensorflow', 'keras', 'cv2'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
