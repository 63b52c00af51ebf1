from xaipipe.logs import logged
from xaipipe.model import start_model_job
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import HeatmapsMember, MembersEvaluation, predict_and_explain_shard

with logged(snakemake.log[0]):
    start_model_job(snakemake.threads, snakemake.config["model"]["imports"])
    members = snakemake.params.members
    maps = snakemake.output[1 : 1 + len(members)]
    evaluation = snakemake.params.get("evaluation")  # the outputs after the maps: each member's evaluation
    predict_and_explain_shard(
        snakemake.input.shard,
        snakemake.input.model,
        snakemake.output[0],
        [
            HeatmapsMember(member["method"], dict(member["params"]), out_path, member["label"])
            for member, out_path in zip(members, maps, strict=True)
        ],
        snakemake.params.targets,
        snakemake.params.batch_size,
        Preprocessing.from_config(snakemake.params.preprocessing),
        on_error=snakemake.config["on_error"],
        evaluation=None
        if evaluation is None
        else MembersEvaluation(dict(evaluation), snakemake.params.masks, snakemake.output[1 + len(members) :]),
    )
