from xaipipe.logs import logged
from xaipipe.report import build_report

with logged(snakemake.log[0]):
    build_report(
        snakemake.input.views,
        snakemake.input.predictions,
        snakemake.params.methods,
        snakemake.input.evaluation,
        snakemake.input.summary or None,
        snakemake.input.agreement or None,
        snakemake.input.plots,
        snakemake.input.failures,
        snakemake.input.checksum,
        snakemake.config,
        snakemake.params.report,
    )
