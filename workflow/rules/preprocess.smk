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
    log:
        f"{OUT}/logs/preprocess/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/preprocess/shard-{{shard}}.tsv"
    script:
        "../../scripts/preprocess.py"
