from xaipipe.demo import mark_demo_folder, train_demo_model
from xaipipe.logs import logged
from xaipipe.model import start_model_job
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import write_json

with logged(snakemake.log[0]):
    mark_demo_folder(snakemake.params.folder)
    start_model_job(snakemake.threads)
    metrics = train_demo_model(
        snakemake.output.model,
        Preprocessing.from_config(snakemake.params.preprocessing),
        snakemake.params.image_size,
        snakemake.params.seed,
    )
    write_json(snakemake.output.metrics, metrics)
