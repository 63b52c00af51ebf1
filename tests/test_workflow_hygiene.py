"""The workflow's own hygiene, checked as CI checks it: `snakemake --lint` and snakefmt find nothing."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pipeline_runs import REPO, environment


def test_snakemake_lint_reports_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / "config/config.yaml"), "--lint"],
        capture_output=True, text=True, env=environment(),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Lints for" not in output, output[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in output, output[-3000:]


def test_snakefmt_finds_nothing_to_change():
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "workflow/rules").glob("*.smk")))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff", *files], capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_shipped_config_plans_its_jobs(tmp_path, config):
    """Each config the README names passes the parse-time checks and plans every variant's jobs (a dry run)."""
    import yaml

    from xaipipe import config as xconfig

    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / "config" / config), "-n"],
        capture_output=True, text=True, env=environment(),
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    methods = yaml.safe_load((REPO / "config" / config).read_text())["methods"]
    labels = [
        (m.get("label") if isinstance(m, dict) else None) or xconfig.methods.canonical_name(m if isinstance(m, str) else m["name"])
        for m in methods if not (isinstance(m, dict) and "sweep" in m)
    ]  # fmt: skip
    planned = set(re.findall(r"method=([^,\s]+)", result.stdout))
    assert labels and set(labels) <= planned, (labels, sorted(planned))
    assert not list(tmp_path.rglob("*.h5")), "a dry run wrote files"


def test_the_conda_environment_has_every_dependency_of_the_package():
    """`snakemake --use-conda` builds its jobs' environment from envs/xaipipe.yaml alone: a dependency of
    pyproject.toml missing there fails the first job that imports it (matplotlib and scipy were missing, so the
    evaluation's plots and ROAD failed under --use-conda), with the same lower bound."""
    import tomllib

    import yaml

    def split(requirement: str) -> tuple[str, str]:
        name, bound = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement.strip()).groups()
        return name.lower().replace("_", "-"), bound.replace(" ", "")

    package = dict(split(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((REPO / "envs/xaipipe.yaml").read_text())["dependencies"]
    listed = [d for d in env if isinstance(d, str)] + [p for d in env if isinstance(d, dict) for p in d["pip"]]
    conda = dict(split(d) for d in listed if split(d)[0] not in ("python", "pip"))
    assert conda == package
