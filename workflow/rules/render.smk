# One render rule per shard: each overlay file is an output Snakemake knows, so deleting one
# overlay re-renders its shard only. A single rule with a {shard} wildcard cannot say this:
# a rule's outputs are patterns of its wildcards, and a shard's overlay names (its sample
# ids) are no pattern of the shard's number. With render.archive a shard's overlays are one
# zip file; with render.max_per_class only the kept samples' (no job where a shard keeps none).
for render_shard in RENDER_SHARDS:

    rule:
        name:
            f"render_{render_shard}"
        input:
            shard=preprocessed_shard_of(render_shard),
            heatmaps=f"{{root}}/heatmaps/{{method}}/shard-{render_shard}.h5",
        output:
            overlay_files(render_shard),
        log:
            f"{{root}}/logs/render/{{method}}/shard-{render_shard}.log",
        benchmark:
            f"{{root}}/benchmarks/render/{{method}}/shard-{render_shard}.tsv"
        group:
            "explain"
        conda:
            "../../envs/xaipipe.yaml"
        threads: 1
        resources:
            mem_mb=light_mem_mb,
            runtime=render_runtime,
        params:
            render=DRAWING,
            rows=rendered_rows(render_shard),
            members=archive_members(render_shard),
        script:
            "../../scripts/render.py"
