import os

from xaipipe.evaluate import read_table
from xaipipe.experiments import read_experiments
from xaipipe.gallery import write_study_page
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    folder = os.path.dirname(snakemake.output[0])
    write_study_page(
        snakemake.output[0],
        read_experiments(snakemake.input.experiments),
        read_table(snakemake.input.comparison) if snakemake.input.comparison else [],
        [os.path.relpath(p, folder) for p in snakemake.input.plots if p.endswith(".png")],
    )
