"""SUBMITTING.md's walkthrough, end to end, as a newcomer does it: a perturbation file made
outside the package (random ±8/255 noise, saved with safetensors) -> `mtlue submit` -> the
workflow -> an entry on the leaderboard, ranked, with its provenance.

The walkthrough's Python snippets run as written, with the dataset's name replaced by the tiny
dataset's; its shell commands are checked to be the ones run here.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_leaderboard import ranking_rows
from test_workflow import ROOT, run_snakemake, workdir_with_config

from mtlue.leaderboard import validate_entry

GUIDE = ROOT / "SUBMITTING.md"
DOCUMENTED_DATASET = "photodigits"


def walkthrough() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    return text.split("## Walkthrough: from a perturbation file to the board", 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", walkthrough(), flags=re.MULTILINE | re.DOTALL)


def run_snippet(code: str, workdir: Path, dataset: str) -> str:
    code = code.replace(f'DATASET = "{DOCUMENTED_DATASET}"', f'DATASET = "{dataset}"')
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"the walkthrough's snippet failed:\n{code}\n{result.stderr}"
    return result.stdout


def test_the_walkthrough_names_the_commands_this_test_runs():
    commands = [line for block in blocks("bash") for line in block.splitlines()]
    assert commands == [
        f"snakemake --cores all resources/data/{DOCUMENTED_DATASET}/manifest.json",
        f"mtlue submit random-noise.safetensors --dataset {DOCUMENTED_DATASET} --name random-noise",
        "snakemake --cores all",
    ]
    assert len(blocks("python")) == 2 and all(f'DATASET = "{DOCUMENTED_DATASET}"' in block for block in blocks("python"))


@pytest.mark.slow
def test_a_newcomer_s_random_noise_reaches_the_board_ranked_with_provenance(tmp_path):
    dataset = "tiny"
    config = {
        "datasets": {dataset: {"source": "shapes", "options": {"train_size": 64, "test_size": 32, "image_size": 24, "crop_size": 20}}},
        "poisons": {"methods": ["clean", "lsp"]},
        "victims": {"backbones": ["test_resnet"], "weightings": ["ew"], "seeds": [0, 1], "train": {"epochs": 1, "batch_size": 32}},
    }
    workdir = workdir_with_config(tmp_path, config)

    # 1. The canonical training split.
    prepared = run_snakemake("--cores", "all", f"resources/data/{dataset}/manifest.json", cwd=workdir)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    # 2. The perturbation file, made with numpy and safetensors alone.
    make_file, inspect_entry = blocks("python")
    run_snippet(make_file, workdir, dataset)
    handed_in = workdir / "random-noise.safetensors"
    # 3. mtlue submit.
    submitted = subprocess.run(
        [sys.executable, "-m", "mtlue", "submit", handed_in.name, "--dataset", dataset, "--name", "random-noise"],
        cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    file_sha256 = hashlib.sha256(handed_in.read_bytes()).hexdigest()
    assert file_sha256 in submitted.stdout + submitted.stderr
    # 4. The workflow.
    result = run_snakemake("--cores", "all", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]

    # 5. The entry: valid, ranked among the methods, with the provenance of the file handed in.
    board = workdir / "results" / "leaderboard"
    path = board / "entries" / f"{dataset}--default--random-noise.json"
    entry = json.loads(path.read_text())
    validate_entry(entry, str(path))
    assert isinstance(entry["rank"], int) and entry["n_seeds"] == 2 and entry["score_std"] is not None
    store_card = json.loads((workdir / "submissions" / dataset / "random-noise" / "card.json").read_text())
    assert entry["provenance"]["poison_sha256"] == store_card["sha256"]
    assert entry["poison"]["submission"]["sha256"] == file_sha256
    assert entry["poison"]["submission"]["layout"] == "float-deltas" and entry["poison"]["epsilon"] == 8
    assert len(entry["provenance"]["git_commit"]) == 40 and len(entry["provenance"]["config_sha256"]) == 64
    config_json = json.loads((workdir / "results" / "config.json").read_text())
    assert config_json["submitted"] == {dataset: ["random-noise"]}
    # Ranked beside the configured methods, on the page and in the Markdown.
    others = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (board / "entries").glob("*.json")}
    assert set(others) == {"clean", "lsp", "random-noise"} and isinstance(others["lsp"]["rank"], int)
    rows = {row[1]: row for row in ranking_rows((board / "index.html").read_text())}
    assert rows["random-noise"][0].lstrip("=") == str(entry["rank"]) and "clean (reference)" in rows
    assert f'id="detail-{dataset}--default--random-noise"' in (board / "index.html").read_text()
    assert re.search(rf"^\| =?{entry['rank']} \| random-noise \|", (board / "leaderboard.md").read_text(), flags=re.MULTILINE)
    # The walkthrough's last snippet reads the same entry.
    printed = run_snippet(inspect_entry, workdir, dataset)
    assert f"rank {entry['rank']}" in printed and file_sha256 in printed and store_card["sha256"] in printed
