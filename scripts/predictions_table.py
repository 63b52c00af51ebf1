from xaipipe.logs import logged
from xaipipe.stages import merge_predictions

with logged(snakemake.log[0]):
    merge_predictions(snakemake.input, snakemake.output[0])
