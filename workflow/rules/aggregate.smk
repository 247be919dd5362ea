# Stage 6: every task x model of a dataset in one JSON, one Markdown table, the summary
# figure (ours next to the paper) and the results page of the Snakemake report
# (snakemake --report report.html -- results/<dataset>/all.json).


rule aggregate:
    input:
        unpack(aggregate_input),
    output:
        all_json=report(
            "results/{dataset}/all.json",
            caption="../report/all_json.rst",
            category="{dataset}",
            subcategory="Results",
            labels={"result": "all.json (every run, the run record)"},
        ),
        summary="results/{dataset}/summary.md",
        figure=report(
            "results/{dataset}/summary.png",
            caption="../report/summary_figure.rst",
            category="{dataset}",
            subcategory="Results",
            labels={"result": "figure: ours next to the paper"},
        ),
        page=report(
            "results/{dataset}/results.html",
            caption="../report/results.rst",
            category="{dataset}",
            subcategory="Results",
            labels={"result": "table: ours, paper, difference"},
        ),
    params:
        info=aggregate_info,
    log:
        "logs/{dataset}/aggregate.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/aggregate.py"


# Training and validation videos without features (unreadable, or missing) are left out of
# training: all.json and summary.md count them, and this says so once at the end of a run.
onsuccess:
    from vis4mer.aggregate import left_out_warning

    for _dataset in config["targets"]:
        if _warning := left_out_warning(f"{RESULTS}/{_dataset}/all.json"):
            logger.warning(_warning)
