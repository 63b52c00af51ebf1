# On a cluster, each heatmaps job and the rendering of its maps (render.smk) form one job
# (group "explain"): one submission per method and shard instead of two. Local runs ignore groups.
rule heatmaps:
    input:
        shard=f"{OUT}/preprocessed/shard-{{shard}}.h5",
        predictions=f"{OUT}/predictions/shard-{{shard}}.h5",
        model=MODEL,
        checksum=MODEL_CHECKSUM,
    output:
        f"{OUT}/heatmaps/{{method}}/shard-{{shard}}.h5",
    log:
        f"{OUT}/logs/heatmaps/{{method}}/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/heatmaps/{{method}}/shard-{{shard}}.tsv"
    group:
        "explain"
    conda:
        "../../envs/xaipipe.yaml"
    threads: MODEL_THREADS
    resources:
        mem_mb=heatmaps_mem_mb,
        runtime=heatmaps_runtime,
        gpu=GPU,
    params:
        method=method_name,
        method_params=method_params,
        targets=config["targets"],
        batch_size=config["batch_size"],
        preprocessing=config["preprocessing"],
    script:
        "../../scripts/heatmaps.py"
