"""Running the real Snakemake pipeline from the tests."""

from __future__ import annotations

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
