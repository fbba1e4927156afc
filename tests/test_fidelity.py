"""The paper presets against the fidelity table (config/protocol.yaml, mtlue.fidelity).

MTL-UE (Yu et al., ICML 2025, arXiv 2505.05279): every preset must resolve, loaded alone, to the
values the table states as ours; a row whose status is `same` must state the release's value as
ours; every row cites the release file and line it was read from; docs/FIDELITY.md is the
table's rendering. No training: configs are resolved and methods / defenses only constructed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mtlue.config import load_config
from mtlue.fidelity import FidelityError, check_preset, grid_of_config, load_protocol, render_markdown, resolve_key, same_value

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = load_protocol(ROOT / "config" / "protocol.yaml")
PAPER_PRESETS = {"celeba", "celeba-stl", "utkface", "utkface-stl", "chestxray14", "chestxray14-stl", "nyuv2"}


@pytest.fixture(scope="module")
def configs() -> dict[str, dict]:
    return {entry.name: load_config(ROOT / entry.file) for entry in PROTOCOL.presets}


def _keyed() -> list:
    return [
        pytest.param(entry.name, row, id=f"{entry.name}:{row.knob}")
        for entry in PROTOCOL.presets
        for row in entry.rows
        if row.key is not None
    ]


def test_every_paper_preset_has_an_entry():
    assert {entry.name for entry in PROTOCOL.presets} == PAPER_PRESETS
    for entry in PROTOCOL.presets:
        assert (ROOT / entry.file).is_file(), entry.file
        assert len(entry.rows) >= 8, f"{entry.name}: too few knobs"


@pytest.mark.parametrize(("preset", "row"), _keyed())
def test_resolved_value_is_ours(configs, preset, row):
    resolved = resolve_key(configs[preset], row.key)
    assert same_value(resolved, row.ours), f"{preset}: {row.knob} ({row.key}) resolves to {resolved!r}, table says {row.ours!r}"


def test_same_rows_state_the_release_value():
    wrong = [f"{e.name}: {r.knob}: ours {r.ours!r} != release {r.release!r}" for e in PROTOCOL.presets for r in e.rows if r.same and not same_value(r.ours, r.release)]
    assert not wrong, "\n".join(wrong)


def test_deviating_rows_say_why():
    for entry in PROTOCOL.presets:
        for row in entry.rows:
            assert row.same or len(row.status) > len("deviates: ") + 10, f"{entry.name}: {row.knob}: {row.status!r}"


def test_every_row_cites_a_release_file_with_a_line_number():
    # load_protocol refuses a source without path:line; here the cited files must exist in the
    # release tree (listed at the commit the table names).
    release_files = {
        "README.md", "some_scripts.sh", "dataset.py", "madrys.py", "toolbox.py", "main_MTL.py", "main_MTL_binary.py",
        "main_STL.py", "perturbation_MTL_DAE.py", "perturbation_MTL_binary_DAE.py", "models/ResNet.py", "models/ResNetMTL.py",
    }
    for entry in PROTOCOL.presets:
        for row in entry.rows:
            for part in row.source.split(";"):
                path, _, line = part.strip().partition(":")
                assert line.split("-")[0].isdigit() and int(line.split("-")[0]) >= 1, f"{entry.name}: {row.knob}: {part!r}"
                assert path in release_files or path.startswith("configs/"), f"{entry.name}: {row.knob}: {path} is not a release file"


def test_grid_matches_the_preset(configs):
    for entry in PROTOCOL.presets:
        grid = grid_of_config(configs[entry.name])
        assert grid.datasets == entry.grid.datasets, entry.name
        assert grid.methods == entry.grid.methods, entry.name
        assert [dict(b) for b in grid.blocks] == [dict(b) for b in entry.grid.blocks], entry.name
        assert grid.victim_jobs == entry.grid.victim_jobs, entry.name
        assert entry.grid.paper, entry.name


def test_paper_presets_state_the_full_method_list(configs):
    full = ["clean", "em", "tap", "sep", "lsp", "ar", "mtlue-em", "mtlue-tap", "mtlue-sep"]
    for name, config in configs.items():
        expected = [m for m in full if m not in ("lsp", "ar")] if name == "nyuv2" else full  # NYUv2: dense tasks only
        assert config["poisons"]["methods"] == expected, name
        assert len(config["datasets"]) == 1, name
        assert config["victims"]["mode"] == ("stl" if name.endswith("-stl") else "mtl"), name


def test_every_preset_matches_its_table():
    for entry in PROTOCOL.presets:
        assert check_preset(entry, ROOT) == [], entry.name


def test_fidelity_md_is_the_rendering():
    assert (ROOT / "docs" / "FIDELITY.md").read_text(encoding="utf-8") == render_markdown(PROTOCOL), (
        "docs/FIDELITY.md is out of date: python -m mtlue.fidelity --write docs/FIDELITY.md"
    )


def test_malformed_tables_are_refused_with_the_row(tmp_path):
    base = (
        "release: {repository: r, commit: c}\npresets:\n- name: p\n  file: config/celeba.yaml\n  description: d\n"
        "  grid: {datasets: [celeba], methods: [clean], blocks: [{backbones: [a], weightings: [b], defenses: [c], seeds: [0]}],"
        " victim_jobs: 1, paper: t}\n  rows:\n"
    )
    cases = {
        "    - {knob: k, key: null, release: 1, source: main.py, ours: 1, status: same}\n": "line numbers",
        "    - {knob: k, key: null, release: 1, source: main.py:3, ours: 1, status: differs}\n": "deviates",
        "    - {knob: k, key: null, release: 1, source: main.py:3, ours: 1, status: same, pending: x}\n": "unknown field",
        "    - {knob: k, key: null, release: 1, source: main.py:3, ours: 1}\n": "missing field",
    }
    for row, message in cases.items():
        path = tmp_path / "protocol.yaml"
        path.write_text(base + row, encoding="utf-8")
        with pytest.raises(FidelityError, match=message):
            load_protocol(path)


def test_unknown_keys_are_refused(configs):
    config = configs["celeba"]
    for key, message in (("victims.train.nope", "no 'nope'"), ("method:tap.nope", "no attribute"), ("derived:nope", "unknown derived"), ("defense:jpeg", "NAME.ATTRIBUTE")):
        with pytest.raises(FidelityError, match=message):
            resolve_key(config, key)
