from xaipipe.evaluate import write_summary_of_run
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_summary_of_run(
        snakemake.params.methods,
        snakemake.input.evaluation,
        snakemake.input.randomization,
        dict(snakemake.params.settings),
        snakemake.input.predictions if snakemake.params.per_class else None,
        snakemake.output[0],
        snakemake.params.model,
    )
