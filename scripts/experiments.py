from xaipipe.experiments import experiment_rows, write_experiments
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    rows = []
    for (name, model), checksum, folder in zip(
        snakemake.params.models.items(), snakemake.input.checksums, snakemake.params.folders, strict=True
    ):
        rows += experiment_rows(name, model["path"], checksum, model["variants"], f"{folder}/heatmaps")
    write_experiments(rows, snakemake.output[0])
