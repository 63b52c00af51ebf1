from xaipipe.evaluate import concatenate_tables
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    concatenate_tables(snakemake.input, snakemake.output[0])
