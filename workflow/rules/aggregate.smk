# Stage 6: every task x model of a dataset in one JSON and one Markdown table.


rule aggregate:
    input:
        unpack(aggregate_input),
    output:
        all_json="results/{dataset}/all.json",
        summary="results/{dataset}/summary.md",
    params:
        info=aggregate_info,
    log:
        "logs/{dataset}/aggregate.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/aggregate.py"
