from xaipipe.logs import logged
from xaipipe.stages import write_failures_table

with logged(snakemake.log[0]):
    write_failures_table(
        snakemake.input.preprocessed,
        snakemake.input.predictions,
        snakemake.input.heatmaps,
        snakemake.output[0],
        snakemake.input.evaluation,
    )
