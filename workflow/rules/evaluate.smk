# The evaluation stage (xaipipe/evaluate.py; config section evaluation): per method and shard the
# per-map metrics, grouped with the shard's heatmaps and rendering on a cluster; per method the
# cascading randomization test; then the agreement between methods, the summary and its plots.
if EVALUATION.metrics:

    localrules:
        agreement,
        evaluation_summary,

    if EVALUATION.per_map:

        rule evaluate:
            input:
                shard=f"{OUT}/preprocessed/shard-{{shard}}.h5",
                predictions=f"{OUT}/predictions/shard-{{shard}}.h5",
                heatmaps=f"{OUT}/heatmaps/{{method}}/shard-{{shard}}.h5",
                model=MODEL,
                checksum=MODEL_CHECKSUM,
                masks=shard_mask_inputs,
            output:
                f"{OUT}/evaluation/{{method}}/shard-{{shard}}.h5",
            log:
                f"{OUT}/logs/evaluate/{{method}}/shard-{{shard}}.log",
            benchmark:
                f"{OUT}/benchmarks/evaluate/{{method}}/shard-{{shard}}.tsv"
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
            shards=sanity_shards("preprocessed"),
            predictions=sanity_shards("predictions"),
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
            method=method_name,
            method_params=method_params,
            n_samples=EVALUATION.sanity_samples,
            stages=EVALUATION.sanity_stages,
        script:
            "../../scripts/randomization.py"

    rule agreement:
        input:
            heatmaps_by_method(),
        output:
            report(
                f"{OUT}/evaluation/agreement.tsv",
                caption="../report/agreement.rst",
                category="Evaluation",
            ),
        log:
            f"{OUT}/logs/agreement.log",
        benchmark:
            f"{OUT}/benchmarks/agreement.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        params:
            methods=list(METHODS),
        script:
            "../../scripts/agreement.py"

    rule evaluation_summary:
        input:
            evaluation=evaluation_by_method() if EVALUATION.per_map else [],
            randomization=(
                expand(
                    f"{OUT}/evaluation/randomization/{{method}}.tsv", method=METHODS
                )
                if EVALUATION.randomization
                else []
            ),
            predictions=f"{OUT}/predictions/shard-{SHARDS[0]}.h5",
        output:
            report(
                f"{OUT}/evaluation/summary.tsv",
                caption="../report/summary.rst",
                category="Evaluation",
            ),
        log:
            f"{OUT}/logs/evaluation_summary.log",
        benchmark:
            f"{OUT}/benchmarks/evaluation_summary.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        params:
            methods=list(METHODS),
            settings=EVALUATION.summary_params(),
            per_class=config["targets"] == "all",
        script:
            "../../scripts/evaluation_summary.py"

    rule evaluation_plots:
        input:
            evaluation=evaluation_by_method() if EVALUATION.per_map else [],
            summary=f"{OUT}/evaluation/summary.tsv",
            agreement=f"{OUT}/evaluation/agreement.tsv",
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
            f"{OUT}/logs/evaluation_plots.log",
        benchmark:
            f"{OUT}/benchmarks/evaluation_plots.tsv"
        conda:
            "../../envs/xaipipe.yaml"
        threads: 1
        resources:
            mem_mb=light_mem_mb,
            runtime=render_runtime,
        params:
            methods=list(METHODS),
            stems={
                name: f"{OUT}/evaluation/{name}"
                for name in xe.plot_names(EVALUATION, len(METHODS))
            },
        script:
            "../../scripts/evaluation_plots.py"
