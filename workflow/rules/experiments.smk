# What the study compares (xaipipe/experiments.py): every model and method variant (config
# models, methods[]: label, sweep) with its full parameters, its maps' folder and the model's
# checksum; and, with the evaluation on, the variants of every model ranked by each metric with
# their intervals. Both are cheap.
localrules:
    experiments,


rule experiments:
    input:
        models=[model.path for model in MODELS.values()],
        checksums=[
            f"{model.folder}/checksums/model.sha256" for model in MODELS.values()
        ],
    output:
        EXPERIMENTS,
    log:
        f"{OUT}/logs/experiments.log",
    conda:
        "../../envs/xaipipe.yaml"
    params:
        models=EXPERIMENT_RECORDS,
        folders=[model.folder for model in MODELS.values()],
    script:
        "../../scripts/experiments.py"


if EVALUATION.metrics:

    localrules:
        comparison,

    rule comparison:
        input:
            summaries,
        output:
            table=report(
                f"{OUT}/evaluation/comparison.tsv",
                caption="../report/comparison.rst",
                category="Evaluation",
            ),
            # with several models, their metrics side by side (one model's: its metrics plot)
            plots=COMPARISON_PLOTS,
        log:
            f"{OUT}/logs/comparison.log",
        conda:
            "../../envs/xaipipe.yaml"
        params:
            models=list(MODELS),
            stem=comparison_stem,
        script:
            "../../scripts/comparison.py"


# with several models, the study's entry pages: one gallery of every model and variant side by
# side (index.html), and a summary (each model's own pages, the comparison)
if len(MODELS) > 1:

    localrules:
        study_report,

    rule study_report:
        input:
            experiments=EXPERIMENTS,
            data=[
                f"{model.folder}/report/data/shard-{shard}.json"
                for model in MODELS.values()
                for shard in SHARDS
            ],
            comparison=(
                f"{OUT}/evaluation/comparison.tsv" if EVALUATION.metrics else []
            ),
            plots=COMPARISON_PLOTS if EVALUATION.metrics else [],
        output:
            gallery=f"{OUT}/report/index.html",
            summary=f"{OUT}/report/summary.html",
            colormap=f"{OUT}/report/colormap.png",
            colormap_signed=f"{OUT}/report/colormap-signed.png",
        log:
            f"{OUT}/logs/study_report.log",
        conda:
            "../../envs/xaipipe.yaml"
        params:
            models=list(MODELS),
            colormap=config["render"]["colormap"],
        script:
            "../../scripts/study_report.py"
