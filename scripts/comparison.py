from xaipipe.evaluate import write_comparison
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_comparison(snakemake.input[0], snakemake.output[0])
