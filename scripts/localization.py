from xaipipe.evaluate import write_localization_table
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_localization_table(snakemake.params.heatmaps_by_method, snakemake.params.mask_dir, snakemake.output[0])
