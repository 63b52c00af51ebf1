from xaipipe.evaluate import write_localization_table
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_localization_table(
        snakemake.params.methods,
        snakemake.input.heatmaps,
        dict(zip(snakemake.params.ids, snakemake.input.masks)),
        snakemake.output[0],
    )
