# The error policy's table (config on_error): the samples each stage skipped or warned about, read
# from the files the stages wrote (h5store's issues), always written (the header alone when
# nothing was). The stages read on_error from the config, not from params: switching it must
# not rerun the shards it leaves unchanged (a shard with no bad sample is the same either way).
rule failures_table:
    input:
        preprocessed=shard_files("preprocessed"),
        predictions=shard_files("predictions"),
        heatmaps=by_method("heatmaps"),
        evaluation=by_method("evaluation"),
    output:
        "{root}/failures.tsv",
    log:
        "{root}/logs/failures_table.log",
    benchmark:
        "{root}/benchmarks/failures_table.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    script:
        "../../scripts/failures_table.py"


# The run's last lines say how many samples were skipped and warned about (nothing is printed
# when there was nothing to do, as Snakemake calls no handler then).
onsuccess:
    run_summary()
