from xaipipe.logs import logged
from xaipipe.model import start_model_job
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import predict_shard

with logged(snakemake.log[0]):
    start_model_job(snakemake.threads, snakemake.config["model"]["imports"])
    predict_shard(
        snakemake.input.shard,
        snakemake.input.model,
        snakemake.output[0],
        snakemake.params.batch_size,
        Preprocessing.from_config(snakemake.params.preprocessing),
        on_error=snakemake.config["on_error"],
    )
