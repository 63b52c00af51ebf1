"""What the workflow's jobs ask a cluster for (xaipipe/resources.py)."""

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
