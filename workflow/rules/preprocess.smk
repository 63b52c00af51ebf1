rule preprocess:
    input:
        shard_images,
    output:
        f"{OUT}/preprocessed/shard-{{shard}}.h5",
    log:
        f"{OUT}/logs/preprocess/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/preprocess/shard-{{shard}}.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    threads: 1
    resources:
        mem_mb=light_mem_mb,
        runtime=preprocess_runtime,
    params:
        ids=shard_ids,
        labels=shard_labels,
        class_names=SAMPLES.class_names,
        preprocessing=config["preprocessing"],
        first_index=shard_start,
    script:
        "../../scripts/preprocess.py"
