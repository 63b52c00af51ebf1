rule preprocess:
    input:
        shard_images,
    output:
        f"{OUT}/preprocessed/shard-{{shard}}.h5",
    params:
        image_dir=IMAGES,
        ids=shard_ids,
        labels=shard_labels,
        class_names=SAMPLES.class_names,
        preprocessing=config["preprocessing"],
        image_format=config["data"]["image_format"],
        first_index=shard_start,
    threads: 1
    resources:
        mem_mb=light_mem_mb,
        runtime=preprocess_runtime,
    log:
        f"{OUT}/logs/preprocess/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/preprocess/shard-{{shard}}.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    script:
        "../../scripts/preprocess.py"
