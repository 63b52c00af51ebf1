from xaipipe.logs import logged
from xaipipe.stages import render_shard

with logged(snakemake.log[0]):
    render_shard(
        snakemake.input.shard,
        snakemake.input.heatmaps,
        snakemake.output,
        snakemake.params.render["overlay"],
        snakemake.params.render["alpha"],
        snakemake.params.render["colormap"],
    )
