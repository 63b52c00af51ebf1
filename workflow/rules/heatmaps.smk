# On a cluster, each heatmaps job and the rendering of its maps (render.smk) form one job
# (group "explain"): one submission per method and shard instead of two. Local runs ignore groups.
rule heatmaps:
    input:
        shard=preprocessed_shard,
        predictions="{root}/predictions/shard-{shard}.h5",
        model=model_path,
        checksum="{root}/checksums/model.sha256",
    output:
        "{root}/heatmaps/{method}/shard-{shard}.h5",
    log:
        "{root}/logs/heatmaps/{method}/shard-{shard}.log",
    benchmark:
        "{root}/benchmarks/heatmaps/{method}/shard-{shard}.tsv"
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
        preprocessing=model_preprocessing,
    script:
        "../../scripts/heatmaps.py"
