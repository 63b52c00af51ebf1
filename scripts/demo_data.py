from xaipipe.demo import write_demo_data
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    write_demo_data(
        snakemake.params.image_dir,
        snakemake.params.mask_dir,
        snakemake.params.n_per_class,
        snakemake.params.image_size,
        snakemake.params.seed,
    )
