from xaipipe.logs import logged
from xaipipe.model import start_model_job
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import compute_heatmaps_shard

with logged(snakemake.log[0]):
    start_model_job(snakemake.threads, snakemake.config["model"]["imports"])
    compute_heatmaps_shard(
        snakemake.input.shard,
        snakemake.input.predictions,
        snakemake.input.model,
        snakemake.params.method,
        dict(snakemake.params.method_params),
        snakemake.params.targets,
        snakemake.params.batch_size,
        snakemake.output[0],
        Preprocessing.from_config(snakemake.params.preprocessing),
        on_error=snakemake.config["on_error"],
        label=snakemake.wildcards.method,
    )
