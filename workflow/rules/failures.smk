# The error policy's table (config on_error): the samples each stage skipped or warned about, read
# from the files the stages wrote (h5store's issues), always written (the header alone when
# nothing was). The stages read on_error from the config, not from params: switching it must
# not rerun the shards it leaves unchanged (a shard with no bad sample is the same either way).
rule failures_table:
    input:
        preprocessed=expand(f"{OUT}/preprocessed/shard-{{shard}}.h5", shard=SHARDS),
        predictions=expand(f"{OUT}/predictions/shard-{{shard}}.h5", shard=SHARDS),
        heatmaps=heatmaps_by_method(),
        evaluation=evaluation_by_method() if EVALUATION.per_map else [],
    output:
        FAILURES,
    log:
        f"{OUT}/logs/failures_table.log",
    benchmark:
        f"{OUT}/benchmarks/failures_table.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    script:
        "../../scripts/failures_table.py"


# The run's last lines say how many samples were skipped and warned about (nothing is printed
# when there was nothing to do, as Snakemake calls no handler then).
onsuccess:
    run_summary(FAILURES)
