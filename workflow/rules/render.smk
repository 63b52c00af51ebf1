# One render rule per shard, so that each overlay file is an output Snakemake knows:
# deleting one overlay re-renders only its shard.
for render_shard in SHARDS:

    rule:
        name:
            f"render_{render_shard}"
        input:
            shard=f"{OUT}/preprocessed/shard-{render_shard}.h5",
            heatmaps=f"{OUT}/heatmaps/{{method}}/shard-{render_shard}.h5",
        output:
            overlay_files(render_shard),
        params:
            out_dir=f"{OUT}/overlays/{{method}}",
            render=config["render"],
            class_suffix=N_CLASSES is not None,
        threads: 1
        resources:
            mem_mb=light_mem_mb,
            runtime=render_runtime,
        group:
            "explain"
        log:
            f"{OUT}/logs/render/{{method}}/shard-{render_shard}.log",
        conda:
            "../../envs/xaipipe.yaml"
        script:
            "../../scripts/render.py"
