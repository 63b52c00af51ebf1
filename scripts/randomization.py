from xaipipe.evaluate import write_randomization_row
from xaipipe.logs import logged
from xaipipe.model import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    write_randomization_row(
        snakemake.input.shard,
        snakemake.input.predictions,
        snakemake.input.model,
        snakemake.wildcards.method,
        dict(snakemake.params.method_params),
        snakemake.params.n_samples,
        snakemake.params.seed,
        snakemake.output[0],
    )
