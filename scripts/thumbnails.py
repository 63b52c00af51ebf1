from xaipipe.logs import logged
from xaipipe.thumbnails import thumbnail_shard

with logged(snakemake.log[0]):
    render = snakemake.params.render
    thumbnail_shard(
        snakemake.input.shard,
        dict(zip(snakemake.params.methods, snakemake.input.heatmaps)),
        snakemake.params.report,
        snakemake.wildcards.shard,
        snakemake.output.views,
        render["alpha"],
        render["colormap"],
        render["overlay"],
    )
