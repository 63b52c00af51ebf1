from xaipipe.evaluate import write_comparison
from xaipipe.logs import logged

with logged(snakemake.log[0]):
    summaries = list(snakemake.input)
    write_comparison(summaries, snakemake.output.table)
    if snakemake.output.plots:
        from xaipipe.plots import comparison_plot

        comparison_plot(summaries, snakemake.params.stem)
