from xaipipe.logs import logged
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import preprocess_shard

with logged(snakemake.log[0]):
    preprocess_shard(
        snakemake.input,
        snakemake.params.ids,
        snakemake.params.labels,
        snakemake.params.class_names,
        Preprocessing.from_config(snakemake.params.preprocessing),
        snakemake.output[0],
        preprocess_overlay=snakemake.params.preprocessing["preprocess_overlay"],
        first_index=snakemake.params.first_index,
        on_error=snakemake.config["on_error"],
    )
