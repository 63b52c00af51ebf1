# The study's report (xaipipe/thumbnails.py, xaipipe/report.py, xaipipe/gallery.py): per shard
# the pictures of every sample and map (rendered like the overlays: a new colour map redraws
# these only), then one light job that writes the gallery and summary pages beside them.
rule thumbnails:
    input:
        shard=preprocessed_shard,
        heatmaps=expand("{{root}}/heatmaps/{method}/shard-{{shard}}.h5", method=LABELS),
    output:
        views="{root}/report/shards/shard-{shard}.json",
        pictures=directory("{root}/report/thumbs/shard-{shard}"),
    log:
        "{root}/logs/thumbnails/shard-{shard}.log",
    benchmark:
        "{root}/benchmarks/thumbnails/shard-{shard}.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    threads: 1
    resources:
        mem_mb=light_mem_mb,
        runtime=thumbnails_runtime,
    params:
        methods=LABELS,
        report=report_folder,
        render=DRAWING,
    script:
        "../../scripts/thumbnails.py"


rule gallery:
    input:
        views=expand("{{root}}/report/shards/shard-{shard}.json", shard=SHARDS),
        predictions=shard_files("predictions"),
        evaluation=by_method("evaluation"),
        summary="{root}/evaluation/summary.tsv" if EVALUATION.metrics else [],
        agreement="{root}/evaluation/agreement.tsv" if EVALUATION.metrics else [],
        plots=[p for p in EVALUATION_PLOTS if p.endswith(".png")],
        failures="{root}/failures.tsv",
        checksum="{root}/checksums/model.sha256",
    output:
        gallery=report(
            "{root}/report/index.html",
            caption="../report/gallery.rst",
            category="Gallery",
        ),
        summary="{root}/report/summary.html",
        colormap="{root}/report/colormap.png",
        colormap_signed="{root}/report/colormap-signed.png",
        # each shard's gallery data, which a study of several models joins into one gallery
        data=expand("{{root}}/report/data/shard-{shard}.json", shard=SHARDS),
        examples=[
            report(
                f"{{root}}/report/examples/{method}.png",
                caption="../report/examples.rst",
                category="Overlays",
                subcategory=method,
            )
            for method in LABELS
        ],
    log:
        "{root}/logs/gallery.log",
    benchmark:
        "{root}/benchmarks/gallery.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    threads: 1
    resources:
        mem_mb=light_mem_mb,
        runtime=render_runtime,
    params:
        methods=LABELS,
        report=report_folder,
        # the summary page shows the whole config: a key that reruns nothing else (on_error,
        # resources) still rewrites the page, so that it shows the config of the last run
        config=config_text,
    script:
        "../../scripts/gallery.py"
