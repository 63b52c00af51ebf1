# On a cluster, each heatmaps job and the rendering of its maps (render.smk) form one job
# (group "explain"): one submission per method and shard instead of two. Local runs ignore groups.
# The variants of a job of several (common.smk, HEATMAPS_JOBS) have no job here: rules heatmaps_group_N below.
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
    wildcard_constraints:
        method=labels_regex(ALONE),
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


# One job per shard for each job of several variants (config heatmaps_jobs: each CAM family by default,
# whose members' maps come from one forward and backward pass per batch; with `shard` every variant):
# one model load gives every member's maps, each written to the member's own file, exactly the file
# its own heatmaps job would write (so every later rule is the same). Its log and benchmark record are
# the job's, under its labels joined by commas. A job whose members change (a method added to or removed
# from the config, a member's parameters changed) is one job with other outputs or params: Snakemake
# reruns it, which rewrites every member's file (each written atomically, after all were computed).
# (a job that also predicts, with heatmaps_jobs: shard, is rule predict's: predict.smk)
for number, job in enumerate([job for job in HEATMAPS_JOBS if not job.predicts], 1):

    rule:
        name:
            f"heatmaps_group_{number}"
        input:
            shard=preprocessed_shard,
            predictions="{root}/predictions/shard-{shard}.h5",
            model=model_path,
            checksum="{root}/checksums/model.sha256",
        output:
            [f"{{root}}/heatmaps/{label}/shard-{{shard}}.h5" for label in job.labels],
        log:
            f"{{root}}/logs/heatmaps/{job.name}/shard-{{shard}}.log",
        benchmark:
            f"{{root}}/benchmarks/heatmaps/{job.name}/shard-{{shard}}.tsv"
        group:
            "explain"
        conda:
            "../../envs/xaipipe.yaml"
        threads: MODEL_THREADS
        resources:
            mem_mb=job_mem_mb(job),
            runtime=job_runtime(job),
            gpu=GPU,
        params:
            members=job_members(job),
            targets=config["targets"],
            batch_size=config["batch_size"],
            preprocessing=model_preprocessing,
        script:
            "../../scripts/heatmaps_group.py"
