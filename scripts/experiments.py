from xaipipe.experiments import experiment_rows, write_experiments
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_experiments(
        experiment_rows(
            snakemake.params.model,
            snakemake.input.model,
            snakemake.input.checksum,
            snakemake.params.variants,
            snakemake.params.heatmaps,
        ),
        snakemake.output[0],
    )
