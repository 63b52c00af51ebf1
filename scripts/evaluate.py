from xaipipe.evaluate import evaluate_shard
from xaipipe.logs import logged
from xaipipe.model import start_model_job

with logged(snakemake.log[0]):
    start_model_job(snakemake.threads, snakemake.config["model"]["imports"])
    evaluate_shard(
        snakemake.input.shard,
        snakemake.input.predictions,
        snakemake.input.heatmaps,
        snakemake.input.model,
        snakemake.output[0],
        dict(snakemake.params.settings),
        snakemake.params.masks,
        snakemake.config["on_error"],
        snakemake.params.batch_size,
    )
