from xaipipe.evaluate import write_plots
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_plots(
        snakemake.params.methods,
        snakemake.input.evaluation,
        snakemake.input.summary,
        snakemake.input.agreement,
        dict(snakemake.params.stems),
    )
