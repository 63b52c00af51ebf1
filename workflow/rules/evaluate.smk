if config["demo"]["build"]:

    localrules:
        localization,
        randomization_table,

    rule localization:
        input:
            heatmaps=heatmaps_by_method(),
            masks=[f"{DEMO['masks']}/{sample_id}" for sample_id in SAMPLES.ids],
        output:
            f"{OUT}/evaluation/localization.tsv",
        log:
            f"{OUT}/logs/localization.log",
        benchmark:
            f"{OUT}/benchmarks/localization.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        params:
            methods=list(METHODS),
            ids=SAMPLES.ids,
        script:
            "../../scripts/localization.py"

    rule randomization:
        input:
            shard=f"{OUT}/preprocessed/shard-00000.h5",
            predictions=f"{OUT}/predictions/shard-00000.h5",
            model=MODEL,
            checksum=MODEL_CHECKSUM,
        output:
            f"{OUT}/evaluation/randomization/{{method}}.tsv",
        log:
            f"{OUT}/logs/randomization/{{method}}.log",
        benchmark:
            f"{OUT}/benchmarks/randomization/{{method}}.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        threads: MODEL_THREADS
        resources:
            mem_mb=heatmaps_mem_mb,
            runtime=randomization_runtime,
            gpu=GPU,
        params:
            method_params=method_params,
            n_samples=config["demo"]["sanity_samples"],
            seed=config["demo"]["seed"],
        script:
            "../../scripts/randomization.py"

    rule randomization_table:
        input:
            expand(f"{OUT}/evaluation/randomization/{{method}}.tsv", method=METHODS),
        output:
            f"{OUT}/evaluation/randomization.tsv",
        log:
            f"{OUT}/logs/randomization_table.log",
        benchmark:
            f"{OUT}/benchmarks/randomization_table.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/concatenate_tables.py"
