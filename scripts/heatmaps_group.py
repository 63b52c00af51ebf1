from xaipipe.logs import logged
from xaipipe.model import start_model_job
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import HeatmapsMember, compute_heatmaps_group_shard

with logged(snakemake.log[0]):
    start_model_job(snakemake.threads, snakemake.config["model"]["imports"])
    compute_heatmaps_group_shard(
        snakemake.input.shard,
        snakemake.input.predictions,
        snakemake.input.model,
        [
            HeatmapsMember(member["method"], dict(member["params"]), out_path, member["label"])
            for member, out_path in zip(snakemake.params.members, snakemake.output, strict=True)
        ],
        snakemake.params.targets,
        snakemake.params.batch_size,
        Preprocessing.from_config(snakemake.params.preprocessing),
        on_error=snakemake.config["on_error"],
    )
