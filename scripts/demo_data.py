from xaipipe.demo import mark_demo_folder, write_demo_data
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    mark_demo_folder(snakemake.params.folder)
    write_demo_data(
        snakemake.params.ids,
        snakemake.output.images,
        snakemake.output.masks,
        snakemake.params.image_size,
        snakemake.params.seed,
    )
