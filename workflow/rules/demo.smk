if config["demo"]["build"]:

    rule demo_data:
        output:
            images=[f"{IMAGES}/{sample_id}" for sample_id in SAMPLES.ids],
            masks=[f"{DEMO['masks']}/{sample_id}" for sample_id in SAMPLES.ids],
        log:
            f"{OUT}/logs/demo_data.log",
        benchmark:
            f"{OUT}/benchmarks/demo_data.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        threads: 1
        resources:
            mem_mb=demo_data_mem_mb,
            runtime=demo_data_runtime,
        params:
            folder=demo_folder,
            ids=SAMPLES.ids,
            image_size=config["demo"]["image_size"],
            seed=config["demo"]["seed"],
        script:
            "../../scripts/demo_data.py"

    rule demo_model:
        output:
            model=DEMO["model"],
            metrics=DEMO["metrics"],
        log:
            f"{OUT}/logs/demo_model.log",
        benchmark:
            f"{OUT}/benchmarks/demo_model.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        threads: 2
        resources:
            mem_mb=demo_model_mem_mb,
            runtime=demo_model_runtime,
            gpu=GPU,
        params:
            folder=demo_folder,
            preprocessing=config["preprocessing"],
            image_size=config["demo"]["image_size"],
            seed=config["demo"]["seed"],
        script:
            "../../scripts/demo_model.py"

    # further demo models, trained with another seed (config models.<name>.path
    # {output}/demo/model-seed<N>.keras), to compare models in one study
    rule demo_model_seed:
        output:
            model=f"{DEMO['folder']}/model-seed{{seed}}.keras",
            metrics=f"{DEMO['folder']}/model-seed{{seed}}_metrics.json",
        log:
            f"{OUT}/logs/demo_model_seed{{seed}}.log",
        benchmark:
            f"{OUT}/benchmarks/demo_model_seed{{seed}}.tsv"
        wildcard_constraints:
            seed=r"\d+",
        conda:
            "../../envs/xaipipe.yaml"
        threads: 2
        resources:
            mem_mb=demo_model_mem_mb,
            runtime=demo_model_runtime,
            gpu=GPU,
        params:
            folder=demo_folder,
            preprocessing=config["preprocessing"],
            image_size=config["demo"]["image_size"],
            seed=demo_seed,
        script:
            "../../scripts/demo_model.py"
