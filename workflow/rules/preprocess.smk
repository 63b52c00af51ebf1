rule preprocess:
    input:
        shard_images,
    output:
        "{pre}/preprocessed/shard-{shard}.h5",
    log:
        "{pre}/logs/preprocess/shard-{shard}.log",
    benchmark:
        "{pre}/benchmarks/preprocess/shard-{shard}.tsv"
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
        preprocessing=preprocessing_of_shards,
        first_index=shard_start,
    script:
        "../../scripts/preprocess.py"
