if config["demo"]["build"]:

    localrules:
        localization,
        randomization_table,

    rule localization:
        input:
            heatmaps=expand(f"{OUT}/heatmaps/{{method}}/shard-{{shard}}.h5", method=METHODS, shard=SHARDS),
            masks=[f"{config['demo']['masks']}/{sample_id}" for sample_id in SAMPLES.ids],
        output:
            f"{OUT}/evaluation/localization.tsv",
        params:
            heatmaps_by_method=heatmaps_by_method(),
            mask_dir=config["demo"]["masks"],
        log:
            f"{OUT}/logs/localization.log",
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/localization.py"

    rule randomization:
        input:
            shard=f"{OUT}/preprocessed/shard-00000.h5",
            predictions=f"{OUT}/predictions/shard-00000.h5",
            model=MODEL,
        output:
            f"{OUT}/evaluation/randomization/{{method}}.tsv",
        params:
            method_params=method_params,
            n_samples=config["demo"]["sanity_samples"],
            seed=config["demo"]["seed"],
        threads: MODEL_THREADS
        resources:
            mem_mb=heatmaps_mem_mb,
            runtime=randomization_runtime,
            gpu=GPU,
        log:
            f"{OUT}/logs/randomization/{{method}}.log",
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/randomization.py"

    rule randomization_table:
        input:
            expand(f"{OUT}/evaluation/randomization/{{method}}.tsv", method=METHODS),
        output:
            f"{OUT}/evaluation/randomization.tsv",
        log:
            f"{OUT}/logs/randomization_table.log",
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/concatenate_tables.py"
