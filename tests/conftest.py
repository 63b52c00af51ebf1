import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A folder of this worker's own in which the pipeline ran on a small demo with Grad-CAM (4 shards): a copy
    of one run that the workers share (``pipeline_runs.shared_run``)."""
    from pipeline_runs import CONFIG, shared_run

    return shared_run(tmp_path_factory, "pipeline", CONFIG)


@pytest.fixture(scope="session")
def shipped_demo_run(tmp_path_factory):
    """The README's first command, ``snakemake --cores 2`` with the shipped config/config.yaml (the demo
    with all nine methods and their evaluation), in a folder of its own; its results/ folder."""
    from pipeline_runs import SHIPPED, snakemake_ok

    workdir = tmp_path_factory.mktemp("shipped")
    snakemake_ok(workdir, SHIPPED)
    return workdir / "results"


@pytest.fixture(scope="session")
def slurm_cluster(request):
    """A real single-node SLURM cluster on this machine (tests/slurm/start-slurm.sh), stopped at the end.

    Starting it needs root and Debian's apt (the script installs SLURM, munge and MariaDB
    when they are missing); where it cannot start, the test that asked for it fails with
    the script's output: it never skips. The daemons that the script started are stopped
    by tests/slurm/stop-slurm.sh when the session ends, also after a failure.
    """
    import shutil
    import subprocess
    from pathlib import Path

    scripts = Path(__file__).parent / "slurm"
    if os.geteuid() != 0:
        pytest.fail("the SLURM test starts a cluster with tests/slurm/start-slurm.sh, which needs root; "
                    "leave it out with -m 'not slurm'")  # fmt: skip
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.fail("the SLURM test needs Debian's apt-get (to install SLURM) or SLURM installed")
    request.addfinalizer(lambda: subprocess.run(["bash", str(scripts / "stop-slurm.sh")], capture_output=True))
    try:
        started = subprocess.run(
            ["bash", str(scripts / "start-slurm.sh")], capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the SLURM cluster did not start within {error.timeout} s: {error.stderr!r}")
    if started.returncode != 0:
        pytest.fail(f"the SLURM cluster could not start (start-slurm.sh exit {started.returncode}):\n"
                    f"{started.stdout[-3000:]}\n{started.stderr[-3000:]}")  # fmt: skip
    return started.stdout
