# The model's sha256, an input of every rule that runs the model: common.smk removes it where
# the model's content changed (whatever the file's modification time), so that they all rerun.
rule model_checksum:
    input:
        model=MODEL,
    output:
        MODEL_CHECKSUM,
    log:
        f"{OUT}/logs/model_checksum.log",
    conda:
        "../../envs/xaipipe.yaml"
    script:
        "../../scripts/model_checksum.py"


rule predict:
    input:
        shard=f"{OUT}/preprocessed/shard-{{shard}}.h5",
        model=MODEL,
        checksum=MODEL_CHECKSUM,
    output:
        f"{OUT}/predictions/shard-{{shard}}.h5",
    log:
        f"{OUT}/logs/predict/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/predict/shard-{{shard}}.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    threads: MODEL_THREADS
    resources:
        mem_mb=predict_mem_mb,
        runtime=predict_runtime,
        gpu=GPU,
    params:
        batch_size=config["batch_size"],
        preprocessing=config["preprocessing"],
    script:
        "../../scripts/predict.py"


rule predictions_table:
    input:
        expand(f"{OUT}/predictions/shard-{{shard}}.h5", shard=SHARDS),
    output:
        f"{OUT}/predictions.tsv",
    log:
        f"{OUT}/logs/predictions_table.log",
    benchmark:
        f"{OUT}/benchmarks/predictions_table.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    script:
        "../../scripts/predictions_table.py"
