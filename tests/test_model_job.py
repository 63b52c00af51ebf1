"""What the workflow's processes import: Snakemake's, parsing the config, not Keras (4 s of every run, dry runs
and each job on a cluster included); a model job's Keras without the optional modules that TensorFlow and
Keras import where installed (``xaipipe.model.start_model_job``): a job pays for nothing it does not use, and a
model's own code can still import them.

Stand-ins for scikit-learn and JAX, first on the path, record each import in a file: the control run shows
that importing Keras imports both where they are installed, so the job's run that imports neither can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xaipipe.model import JOB_SKIPPED_IMPORTS, _skipped_imports

STAND_IN = (
    "import os, types\n"
    "with open(os.environ['IMPORTED'], 'a') as f:\n"
    "    f.write(__name__ + '\\n')\n"
    "monitoring = types.SimpleNamespace(record_scalar=None)\n"  # what Keras's Orbax callback reads of JAX
)


def stand_ins(tmp_path: Path, names: tuple[str, ...], source: str) -> dict[str, str]:
    """Packages ``names`` of ``source`` in ``tmp_path/path``: the environment (``IMPORTED``, the record file they
    write to, and ``PYTHONPATH``, them first, then this repository) that makes a process import them."""
    for name in names:
        (tmp_path / "path" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "path" / name / "__init__.py").write_text(source)
    record = tmp_path / "imported.txt"
    record.unlink(missing_ok=True)
    paths = [str(tmp_path / "path"), str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    return {"IMPORTED": str(record), "PYTHONPATH": os.pathsep.join(filter(None, paths))}


def run(tmp_path: Path, code: str, **env: str) -> list[str]:
    """The stand-ins imported by ``code`` in a fresh process, in order."""
    made = stand_ins(tmp_path, JOB_SKIPPED_IMPORTS, STAND_IN)
    record = Path(made["IMPORTED"])
    environment = {**os.environ, **made, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", **env}
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok"), done.stdout
    return record.read_text().split() if record.exists() else []


def test_keras_imports_the_optional_modules_where_installed(tmp_path):
    """The control: without the job's start, importing Keras (TensorFlow backend) imports both stand-ins."""
    assert sorted(run(tmp_path, "import keras; print('ok')")) == ["jax", "sklearn"]


def test_a_model_job_imports_neither_yet_a_model_can_import_them_later(tmp_path):
    code = (
        "import sys\n"
        "from xaipipe.model import start_model_job\n"
        "start_model_job(1)\n"
        "assert 'keras' in sys.modules and 'tensorflow' in sys.modules\n"
        "assert 'sklearn' not in sys.modules and 'jax' not in sys.modules, sorted(sys.modules)\n"
        "import keras, numpy as np\n"
        "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, use_bias=False)])\n"
        "model.set_weights([np.array([[1., 0.], [0., 2.], [1., 1.]], np.float32)])\n"
        "out = model.predict_on_batch(np.array([[1., 2., 3.]], np.float32))\n"
        "assert np.allclose(out, [[4., 7.]]), out\n"  # 1+3, 4+3: the model runs in the job's process
        "import sklearn\n"  # a model's own code can still import it
        "print('ok')\n"
    )
    assert run(tmp_path, code) == ["sklearn"]


@pytest.mark.parametrize(
    ("backend", "expected"), [("tensorflow", ("sklearn", "jax")), ("torch", ("sklearn", "jax")), ("jax", ("sklearn",))]
)
def test_the_backend_keras_is_set_to_is_never_skipped(monkeypatch, tmp_path, backend, expected):
    """By ``KERAS_BACKEND``, else by keras.json (here in ``KERAS_HOME``)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_BACKEND", backend)
    assert _skipped_imports() == expected
    monkeypatch.delenv("KERAS_BACKEND")
    (tmp_path / "keras.json").write_text('{"backend": "%s", "floatx": "float32"}' % backend)
    assert _skipped_imports() == expected


def test_parsing_the_config_imports_no_keras(monkeypatch, tmp_path):
    """A dry run of the shipped demo's config, its evaluation included (whose settings are checked as the config
    is read), with stand-ins for Keras and TensorFlow that record and refuse any import."""
    from pipeline_runs import snakemake

    refusing = "import os\nopen(os.environ['IMPORTED'], 'a').write(__name__ + '\\n')\nraise RuntimeError(__name__)\n"
    for key, value in stand_ins(tmp_path, ("keras", "tensorflow"), refusing).items():
        monkeypatch.setenv(key, value)
    record = tmp_path / "imported.txt"
    (tmp_path / "run").mkdir()
    demo = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    result = snakemake(tmp_path / "run", demo, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo_model" in result.stdout and "evaluate" in result.stdout, result.stdout[-2000:]
    assert not record.exists(), record.read_text()
