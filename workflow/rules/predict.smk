# The model's sha256, an input of every rule that runs the model: common.smk removes it where
# the model's content changed (whatever the file's modification time), so that they all rerun.
rule model_checksum:
    input:
        model=model_path,
        imports=MODEL_IMPORTS,
    output:
        "{root}/checksums/model.sha256",
    log:
        "{root}/logs/model_checksum.log",
    conda:
        "../../envs/xaipipe.yaml"
    script:
        "../../scripts/model_checksum.py"


# With heatmaps_jobs: shard (PREDICTS, common.smk) the job goes on to write every variant's maps of the shard and
# their evaluation (EVALUATES), each to the file its own heatmaps or evaluate job would write, from the same model
# load (heatmaps.smk and evaluate.smk then have no job of the shard's).
rule predict:
    input:
        **({"masks": shard_mask_inputs} if EVALUATES else {}),
        shard=preprocessed_shard,
        model=model_path,
        checksum="{root}/checksums/model.sha256",
    output:
        "{root}/predictions/shard-{shard}.h5",
        *(
            [
                f"{{root}}/{kind}/{label}/shard-{{shard}}.h5"
                for kind in (
                    ("heatmaps", "evaluation") if EVALUATES else ("heatmaps",)
                )
                for label in PREDICTS.labels
            ]
            if PREDICTS
            else []
        ),
    log:
        "{root}/logs/predict/shard-{shard}.log",
    benchmark:
        "{root}/benchmarks/predict/shard-{shard}.tsv"
    group:
        "explain" if PREDICTS else None
    conda:
        "../../envs/xaipipe.yaml"
    threads: MODEL_THREADS
    resources:
        mem_mb=predict_mem_mb,
        runtime=predict_runtime,
        gpu=GPU,
    params:
        # the job's variants, only where it has some (other params would rerun every finished predict job)
        **(
            {"members": job_members(PREDICTS), "targets": config["targets"]}
            if PREDICTS
            else {}
        ),
        **(
            {
                "evaluation": EVALUATION.shard_params(),
                "masks": shard_mask_paths if EVALUATION.localization else None,
            }
            if EVALUATES
            else {}
        ),
        batch_size=config["batch_size"],
        preprocessing=model_preprocessing,
    script:
        (
            "../../scripts/predict_and_explain.py"
            if PREDICTS
            else "../../scripts/predict.py"
        )


rule predictions_table:
    input:
        shard_files("predictions"),
    output:
        "{root}/predictions.tsv",
    log:
        "{root}/logs/predictions_table.log",
    benchmark:
        "{root}/benchmarks/predictions_table.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    script:
        "../../scripts/predictions_table.py"
