from xaipipe.caches import write_model_checksum
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_model_checksum(snakemake.input.model, snakemake.output[0], snakemake.input.imports)
