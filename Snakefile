from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


# The demo config only when no --configfile is given: a user's config starts from the
# schema's defaults (demo.build false), never from the demo's settings.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/heatmaps.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/failures.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/experiments.smk"


rule all:
    default_target: True
    input:
        all_outputs,


# Outputs of earlier runs that this config no longer makes (samples removed or renamed, another shard_size, a
# variant or a model removed) are said at the start, never deleted.
if workflow.is_main_process:
    roots = [*BY_ROOT, *PREPROCESSED]
    orphans = xcaches.orphan_outputs(
        [*roots, *xcaches.former_model_folders(OUT, roots)], all_outputs(None)
    )
    if orphans:
        logger.warning(xcaches.orphans_warning(orphans, OUT))
