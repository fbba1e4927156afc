# Submitted perturbation stores (`mtlue submit`, see SUBMITTING.md): every store under
# {submissions_root}/{dataset}/ becomes a method of that dataset. It is re-verified (hash, budget,
# split) and installed where the poison stage would have written it, so the victims, tables and
# leaderboard treat it like any configured method. The submitter never runs a victim.


rule install_submission:
    input:
        manifest=rules.prepare.output.manifest,
        card=f"{SUBMISSIONS}/{{dataset}}/{{method}}/card.json",
        deltas=f"{SUBMISSIONS}/{{dataset}}/{{method}}/deltas.safetensors",
    output:
        card=f"{RESULTS}/{{dataset}}/poisons/{{method}}/card.json",
        preview=report(
            f"{RESULTS}/{{dataset}}/poisons/previews/{{method}}.png",
            category="Poisons",
            subcategory="{dataset}",
            caption="../report/poison_preview.rst",
        ),
    wildcard_constraints:
        # Matches nothing when there are no submissions, so the poison rule owns every method.
        method="|".join(map(re.escape, SUBMITTED_NAMES)) or "(?!)",
    params:
        epsilon=POISONS["epsilon"],
    log:
        f"{LOGS}/install_submission/{{dataset}}/{{method}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "mtlue install-submission --data $(dirname {input.manifest}) --submission $(dirname {input.card})"
        " --out $(dirname {output.card}) --epsilon {params.epsilon} --preview {output.preview} > {log} 2>&1"
