# The study's report (xaipipe/thumbnails.py, xaipipe/report.py, xaipipe/gallery.py): per shard
# the pictures of every sample and map (rendered like the overlays: a new colour map redraws
# these only), then one light job that writes the gallery and summary pages beside them.
REPORT = f"{OUT}/report"


rule thumbnails:
    input:
        shard=f"{OUT}/preprocessed/shard-{{shard}}.h5",
        heatmaps=expand(
            f"{OUT}/heatmaps/{{method}}/shard-{{{{shard}}}}.h5", method=METHODS
        ),
    output:
        views=f"{REPORT}/shards/shard-{{shard}}.json",
        pictures=directory(f"{REPORT}/thumbs/shard-{{shard}}"),
    log:
        f"{OUT}/logs/thumbnails/shard-{{shard}}.log",
    benchmark:
        f"{OUT}/benchmarks/thumbnails/shard-{{shard}}.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    threads: 1
    resources:
        mem_mb=light_mem_mb,
        runtime=thumbnails_runtime,
    params:
        methods=list(METHODS),
        report=report_folder,
        render=config["render"],
    script:
        "../../scripts/thumbnails.py"


rule gallery:
    input:
        views=expand(f"{REPORT}/shards/shard-{{shard}}.json", shard=SHARDS),
        predictions=expand(f"{OUT}/predictions/shard-{{shard}}.h5", shard=SHARDS),
        evaluation=evaluation_by_method() if EVALUATION.per_map else [],
        summary=f"{OUT}/evaluation/summary.tsv" if EVALUATION.metrics else [],
        agreement=f"{OUT}/evaluation/agreement.tsv" if EVALUATION.metrics else [],
        plots=[p for p in EVALUATION_PLOTS if p.endswith(".png")],
        failures=FAILURES,
        checksum=MODEL_CHECKSUM,
    output:
        gallery=report(
            f"{REPORT}/index.html",
            caption="../report/gallery.rst",
            category="Gallery",
        ),
        summary=f"{REPORT}/summary.html",
        colormap=f"{REPORT}/colormap.png",
        examples=[
            report(
                f"{REPORT}/examples/{method}.png",
                caption="../report/examples.rst",
                category="Overlays",
                subcategory=method,
            )
            for method in METHODS
        ],
    log:
        f"{OUT}/logs/gallery.log",
    benchmark:
        f"{OUT}/benchmarks/gallery.tsv"
    conda:
        "../../envs/xaipipe.yaml"
    threads: 1
    resources:
        mem_mb=light_mem_mb,
        runtime=render_runtime,
    params:
        methods=list(METHODS),
        report=report_folder,
    script:
        "../../scripts/gallery.py"
