"""The workflow's own hygiene, checked as CI checks it: `snakemake --lint` and snakefmt find nothing."""

from __future__ import annotations

import subprocess
import sys

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
