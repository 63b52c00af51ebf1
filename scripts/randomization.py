from xaipipe.evaluate import RANDOMIZATION_SEED, randomization_table
from xaipipe.logs import logged
from xaipipe.model import start_model_job

with logged(snakemake.log[0]):
    start_model_job(snakemake.threads, snakemake.config["model"]["imports"])
    randomization_table(
        snakemake.input.shards,
        snakemake.input.predictions,
        snakemake.input.model,
        snakemake.params.method,
        dict(snakemake.params.method_params),
        snakemake.params.n_samples,
        snakemake.params.stages,
        RANDOMIZATION_SEED,
        snakemake.output[0],
    )
