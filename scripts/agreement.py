from xaipipe.evaluate import agreement_table
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    agreement_table(snakemake.params.methods, snakemake.input, snakemake.output[0])
