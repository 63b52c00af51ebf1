"""The study's list of experiments: every model x method variant that a run computes.

``experiments.tsv`` (one row per model and variant, in the config's order): the model's name
and file, the variant's label, its canonical method and its parameters as the config sets them
(JSON, keys sorted; each heatmaps file records all of them, defaults included, in ``method_params``),
the folder of its maps and the model's sha256 as recorded by the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from xaipipe.atomic import atomic_path
from xaipipe.caches import recorded_checksum

HEADER = ("model", "variant", "method", "parameters", "heatmaps", "model_path", "model_sha256")


def experiment_rows(
    model: str,
    model_path: str,
    checksum_path: str | os.PathLike,
    variants: Mapping[str, Mapping[str, Any]],
    heatmaps_folder: str,
) -> list[dict[str, str]]:
    """One row per variant of ``model``; ``variants``: label -> {"method": ..., "params": {...}}."""
    digest = recorded_checksum(checksum_path)
    if digest is None:
        raise ValueError(f"{checksum_path}: holds no sha256; delete it so that the run writes it again")
    return [
        {
            "model": model,
            "variant": label,
            "method": str(variant["method"]),
            "parameters": json.dumps(dict(variant["params"]), sort_keys=True),
            "heatmaps": f"{heatmaps_folder}/{label}",
            "model_path": model_path,
            "model_sha256": digest,
        }
        for label, variant in variants.items()
    ]


def write_experiments(rows: list[dict[str, str]], out_path: str | os.PathLike) -> None:
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write("\t".join(HEADER) + "\n")
        for row in rows:
            out.write("\t".join(row[key] for key in HEADER) + "\n")


def read_experiments(path: str | os.PathLike) -> list[dict[str, str]]:
    from xaipipe.evaluate import read_table

    return read_table(path)
