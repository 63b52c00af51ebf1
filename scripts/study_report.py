import os

from xaipipe.evaluate import read_table
from xaipipe.experiments import read_experiments
from xaipipe.gallery import write_study
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    folder = os.path.dirname(snakemake.output.gallery)
    names = snakemake.params.models
    per_model = len(snakemake.input.data) // len(names)  # each model's shards, in the order of the models
    write_study(
        {name: snakemake.input.data[k * per_model : (k + 1) * per_model] for k, name in enumerate(names)},
        folder,
        read_experiments(snakemake.input.experiments),
        read_table(snakemake.input.comparison) if snakemake.input.comparison else [],
        [os.path.relpath(p, folder) for p in snakemake.input.plots if p.endswith(".png")],
        snakemake.params.colormap,
    )
