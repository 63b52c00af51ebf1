"""Running the real Snakemake pipeline from the tests."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
N_PER_CLASS = 10
SHARD_SIZE = 8
CONFIG = {
    "demo": {"build": True, "n_per_class": N_PER_CLASS, "image_size": 192, "seed": 42},
    "data": {"images": "results/demo/images"},
    "model": {"path": "results/demo/model.keras"},
    "preprocessing": {"size": [64, 64], "channels": 1, "standardize": "tf"},
    "methods": ["gc"],
    "shard_size": SHARD_SIZE,
    "batch_size": 5,
    "evaluation": {"sanity_samples": 8, "sanity_stages": 2},
}
# the repository's own config: the README's first command runs it
SHIPPED = yaml.safe_load((REPO / "config/config.yaml").read_text())


def use_demo_of(workdir: Path, output: str) -> None:
    """Give the output folder ``output`` of ``workdir`` the demo (images, masks, model) built under results/ there.

    A demo is built only into its own output's folder (and training it again would not give
    the same weights bit for bit), so runs with another ``output`` start from a copy.
    """
    target = workdir / output / "demo"
    if not target.exists():
        shutil.copytree(workdir / "results/demo", target)  # with the modification times


def shared_run(tmp_path_factory, name: str, config: dict) -> Path:
    """A folder of this test process's own in which the pipeline ran ``config`` (``name``: the folder's stem).

    The run is made once per test session: under pytest-xdist the first worker to ask runs it in the folder that
    the workers share (the others wait on a lock), and every worker gets a copy with the files' modification
    times and Snakemake's records, so that in the copy the run is complete and up to date. The copy is the
    worker's to change; the shared run stays as it ran.
    """
    own = tmp_path_factory.getbasetemp()
    common = own.parent if os.environ.get("PYTEST_XDIST_WORKER") else own  # pytest-N/, above popen-gwK/
    made = common / f"{name}-shared"
    with open(common / f"{name}-shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (made / ".complete").exists():
            shutil.rmtree(made, ignore_errors=True)
            made.mkdir()
            snakemake_ok(made, config)
            (made / ".complete").touch()
    workdir = tmp_path_factory.mktemp(name)
    shutil.copytree(made, workdir, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
    return workdir


def environment() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def snakemake_command(workdir: Path, config: dict, *args: str) -> list[str]:
    """The command that runs the workflow of this repository in ``workdir`` with ``config`` (written there)."""
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(config_path), "--cores", "2", *args,
    ]  # fmt: skip


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """Run the workflow of this repository in ``workdir`` with ``config``."""
    return subprocess.run(snakemake_command(workdir, config, *args), capture_output=True, text=True, env=environment())


def snakemake_ok(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """:func:`snakemake`, failing the test with the end of Snakemake's log unless the run succeeds."""
    result = snakemake(workdir, config, *args)
    assert result.returncode == 0, result.stderr[-4000:]
    return result
