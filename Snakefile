# vis4mer pipeline: videos -> frames -> features -> train -> evaluate -> aggregate.
#
#   snakemake --cores 2 --configfile config/demo.yaml results/demo/all.json
#
# Configuration: config/config.yaml (validated against workflow/schemas/config.schema.yaml);
# stages: workflow/rules/*.smk; scripts: workflow/scripts/; logic: lib/vis4mer.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# snakemake --report report.html -- results/<dataset>/all.json: the results of the targets
# (marked with report() in the rules) and this description of what was run.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset=DATASET_REGEX,
    task=TASK_REGEX,
    model=MODEL_REGEX,
    shard=r"\d+",
    backbone=r"[A-Za-z0-9_.-]+",


localrules:
    all,
    confusion_plot,
    aggregate,


rule all:
    default_target: True
    input:
        all_targets(),


include: "workflow/rules/demo_videos.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/frames.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
