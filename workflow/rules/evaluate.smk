# The evaluation stage (xaipipe/evaluate.py; config section evaluation): per method and shard the
# per-map metrics, grouped with the shard's heatmaps and rendering on a cluster; per method the
# cascading randomization test; then the agreement between methods, the summary and its plots.
if EVALUATION.metrics:

    localrules:
        agreement,
        evaluation_summary,

    # with EVALUATES (heatmaps_jobs: shard) the maps' evaluation is rule predict's (predict.smk)
    if EVALUATION.per_map and not EVALUATES:

        rule evaluate:
            input:
                shard=preprocessed_shard,
                predictions="{root}/predictions/shard-{shard}.h5",
                heatmaps="{root}/heatmaps/{method}/shard-{shard}.h5",
                model=model_path,
                checksum="{root}/checksums/model.sha256",
                masks=shard_mask_inputs,
            output:
                "{root}/evaluation/{method}/shard-{shard}.h5",
            log:
                "{root}/logs/evaluate/{method}/shard-{shard}.log",
            benchmark:
                "{root}/benchmarks/evaluate/{method}/shard-{shard}.tsv"
            group:
                "explain"
            conda:
                "../../envs/xaipipe.yaml"
            threads: MODEL_THREADS
            resources:
                mem_mb=evaluation_mem_mb,
                runtime=evaluation_runtime,
                gpu=GPU,
            params:
                settings=EVALUATION.shard_params(),
                masks=shard_mask_paths if EVALUATION.localization else None,
                batch_size=config["batch_size"],
            script:
                "../../scripts/evaluate.py"

    rule randomization:
        input:
            shards=shard_files("preprocessed"),
            predictions=shard_files("predictions"),
            model=model_path,
            checksum="{root}/checksums/model.sha256",
        output:
            "{root}/evaluation/randomization/{method}.tsv",
        log:
            "{root}/logs/randomization/{method}.log",
        benchmark:
            "{root}/benchmarks/randomization/{method}.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        threads: MODEL_THREADS
        resources:
            mem_mb=heatmaps_mem_mb,
            runtime=randomization_runtime,
            gpu=GPU,
        params:
            method=method_name,
            method_params=method_params,
            n_samples=EVALUATION.sanity_samples,
            stages=EVALUATION.sanity_stages,
        script:
            "../../scripts/randomization.py"

    rule agreement:
        input:
            by_method("heatmaps"),
        output:
            report(
                "{root}/evaluation/agreement.tsv",
                caption="../report/agreement.rst",
                category="Evaluation",
            ),
        log:
            "{root}/logs/agreement.log",
        benchmark:
            "{root}/benchmarks/agreement.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        params:
            methods=LABELS,
        script:
            "../../scripts/agreement.py"

    rule evaluation_summary:
        input:
            evaluation=by_method("evaluation"),
            randomization=(
                expand("{{root}}/evaluation/randomization/{method}.tsv", method=LABELS)
                if EVALUATION.randomization
                else []
            ),
            predictions=f"{{root}}/predictions/shard-{SHARDS[0]}.h5",
        output:
            report(
                "{root}/evaluation/summary.tsv",
                caption="../report/summary.rst",
                category="Evaluation",
            ),
        log:
            "{root}/logs/evaluation_summary.log",
        benchmark:
            "{root}/benchmarks/evaluation_summary.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        params:
            methods=variant_methods,
            model=model_name,
            settings=EVALUATION.summary_params(),
            per_class=config["targets"] == "all",
        script:
            "../../scripts/evaluation_summary.py"

    rule evaluation_plots:
        input:
            evaluation=by_method("evaluation"),
            summary="{root}/evaluation/summary.tsv",
            agreement="{root}/evaluation/agreement.tsv",
        output:
            [
                (
                    report(p, caption="../report/plots.rst", category="Evaluation")
                    if p.endswith(".png")
                    else p
                )
                for p in EVALUATION_PLOTS
            ],
        log:
            "{root}/logs/evaluation_plots.log",
        benchmark:
            "{root}/benchmarks/evaluation_plots.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        threads: 1
        resources:
            mem_mb=light_mem_mb,
            runtime=render_runtime,
        params:
            methods=LABELS,
            stems=plot_stems,
        script:
            "../../scripts/evaluation_plots.py"
