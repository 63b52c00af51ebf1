# What the study compares (xaipipe/experiments.py): every method variant (config methods[]:
# label, sweep) with its full parameters, its maps' folder and the model's checksum; and, with
# the evaluation on, the variants ranked by each metric with their intervals. Both are cheap.
localrules:
    experiments,


rule experiments:
    input:
        model=MODEL,
        checksum=MODEL_CHECKSUM,
    output:
        EXPERIMENTS,
    log:
        f"{OUT}/logs/experiments.log",
    conda:
        "../../envs/xaipipe.yaml"
    params:
        model="model",
        variants=VARIANT_RECORDS,
        heatmaps=f"{OUT}/heatmaps",
    script:
        "../../scripts/experiments.py"


if EVALUATION.metrics:

    localrules:
        comparison,

    rule comparison:
        input:
            f"{OUT}/evaluation/summary.tsv",
        output:
            report(
                f"{OUT}/evaluation/comparison.tsv",
                caption="../report/comparison.rst",
                category="Evaluation",
            ),
        log:
            f"{OUT}/logs/comparison.log",
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/comparison.py"
