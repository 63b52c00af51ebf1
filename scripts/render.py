from xaipipe.logs import logged
from xaipipe.stages import render_shard

with logged(snakemake.log[0]):
    members = snakemake.params.members  # render.archive: the names in the shard's zip file
    render_shard(
        snakemake.input.shard,
        snakemake.input.heatmaps,
        snakemake.output if members is None else members,
        snakemake.params.render["overlay"],
        snakemake.params.render["alpha"],
        snakemake.params.render["colormap"],
        snakemake.params.rows,
        None if members is None else snakemake.output[0],
    )
