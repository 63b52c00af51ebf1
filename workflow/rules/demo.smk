if config["demo"]["build"]:

    rule demo_data:
        output:
            images=[f"{IMAGES}/{sample_id}" for sample_id in SAMPLES.ids],
            masks=[f"{config['demo']['masks']}/{sample_id}" for sample_id in SAMPLES.ids],
        params:
            image_dir=IMAGES,
            mask_dir=config["demo"]["masks"],
            n_per_class=config["demo"]["n_per_class"],
            image_size=config["demo"]["image_size"],
            seed=config["demo"]["seed"],
        threads: 1
        resources:
            mem_mb=lambda wildcards, attempt: 1000 * attempt,
            runtime=lambda wildcards, attempt: 10 * attempt,
        log:
            f"{OUT}/logs/demo_data.log",
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/demo_data.py"

    rule demo_model:
        output:
            model=MODEL,
            metrics=config["demo"]["metrics"],
        params:
            preprocessing=config["preprocessing"],
            image_size=config["demo"]["image_size"],
            seed=config["demo"]["seed"],
        threads: 2
        resources:
            mem_mb=lambda wildcards, attempt: 3000 * attempt,
            runtime=lambda wildcards, attempt: int(20 * attempt * RUNTIME_SCALE),
            gpu=GPU,
        log:
            f"{OUT}/logs/demo_model.log",
        benchmark:
            f"{OUT}/benchmarks/demo_model.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/demo_model.py"
