"""The bad-input suite: malformed inputs, refused by the real commands before any work.

One table, ``CASES``: each row is a command line (placeholders below), the files a case lays
out first (a user's files, which must survive), and a fragment of the one-line error expected.
Each case runs ``mtlue`` in this process, expects exit status 2, one ``mtlue COMMAND: error:``
line on stderr (or argparse's usage error), and then checks that no file anywhere in the case's
folder, the prepared dataset or the shared stores changed: nothing is deleted, written or
half-written. Every case stops before training or generation, so the table costs seconds.

Placeholders: ``{tmp}`` the case's own folder, ``{data}`` a tiny prepared ``shapes``,
``{store}`` an ``lsp`` perturbation store of it, ``{sub}`` a submission store (``my-ue``),
``{surrogate}`` a trained surrogate folder. In ``files``, a value ``"store"``, ``"data"``,
``"sub"`` or ``"surrogate"`` copies that folder to the path (an earlier output of a command),
``"deltas"`` writes a valid submission file, bytes and text are written as they are.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from mtlue.cli import main

NOTE = "my notes, not an output\n"
USER = {"notes.txt": NOTE}  # one user file at the top of the case folder

# A safetensors file whose header claims 2 MiB (above the 1 MiB cap) and really holds it.
_BIG = b'{"__metadata__":{"pad":"' + b"x" * (2 << 20) + b'"}}'
BIG_HEADER = len(_BIG).to_bytes(8, "little") + _BIG
LIAR_HEADER = (10_000).to_bytes(8, "little") + b'{"a":1}'  # claims more header than the file has

CONFIG_HEAD = "datasets: {shapes: {options: {train_size: 8, test_size: 4, image_size: 16, crop_size: 12}}}\n"
LATIN1_LABELS = "image,smiling\nb\xe9b\xe9.png,1\n".encode("latin-1")

# (command line, files laid out first, expected message fragment)
CASES: list[tuple[str, dict[str, object], str]] = [
    # --- mtlue prepare --out: never deletes a user's folder --------------------------------
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out/notes.txt": NOTE}, "holds no manifest.json of a prepared dataset (notes.txt)"),
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out/sub/deep.txt": NOTE}, "(sub/deep.txt)"),
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out/.hidden": NOTE}, "(.hidden)"),
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out": "data", "out/notes.txt": NOTE}, "files that are not part of its prepared dataset (notes.txt)"),
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out": "data", "out/train/extra.npy": b"x"}, "(train/extra.npy)"),
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out": "store"}, "holds no manifest.json"),
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out/manifest.json": '{"format": "something-else"}'}, "holds no manifest.json"),
    ("prepare shapes --out {tmp}/out --option train_size=8", {"out/manifest.json": "not json"}, "holds no manifest.json"),
    ("prepare shapes --out {tmp}/notes.txt --option train_size=8", USER, "is a file, not a folder"),
    ("prepare shapes --out {tmp}/notes.txt/out --option train_size=8", USER, "is a file, not a folder; choose an output path under a folder"),
    ("prepare shapes --raw {tmp}/raw --out {tmp}/raw --option train_size=8", {"raw/source.bin": b"raw"}, "is the input --raw"),
    ("prepare shapes --raw {tmp}/raw --out {tmp}/raw/prepared --option train_size=8", {"raw/source.bin": b"raw"}, "lies inside the input --raw"),
    ("prepare shapes --raw {tmp}/raw/x --out {tmp}/raw --option train_size=8", {"raw/x/source.bin": b"raw"}, "holds the input --raw"),
    ("prepare shapes --out {tmp} --option train_size=8", USER, "holds the input --raw resources/raw/shapes"),
    ("prepare shapes --raw {tmp}/raw --out {tmp} --option train_size=8", USER, "holds the input --raw"),
    # --- mtlue prepare: options of the wrong type, named -----------------------------------
    ("prepare shapes --out {tmp}/o --option dense_tasks=maybe", {}, "option dense_tasks must be a boolean (true or false), got 'maybe'"),
    ("prepare shapes --out {tmp}/o --option dense_tasks=1", {}, "option dense_tasks must be a boolean"),
    ("prepare shapes --out {tmp}/o --option train_size=abc", {}, "option train_size must be an integer, got 'abc'"),
    ("prepare shapes --out {tmp}/o --option train_size=true", {}, "option train_size must be an integer, got True"),
    ("prepare shapes --out {tmp}/o --option train_size=2.5", {}, "option train_size must be an integer, got 2.5"),
    ("prepare shapes --out {tmp}/o --option train_size=[1]", {}, "option train_size must be an integer"),
    ("prepare shapes --out {tmp}/o --option image_size=big", {}, "option image_size must be an integer"),
    ("prepare shapes --out {tmp}/o --option seed=x", {}, "option seed must be an integer"),
    ("prepare shapes --out {tmp}/o --option train_size=0", {}, "train_size must be at least 1"),
    ("prepare shapes --out {tmp}/o --option crop_size=99", {}, "crop_size must be in 8..image_size"),
    ("prepare shapes --out {tmp}/o --option nosuch=1", {}, "has no option(s) nosuch"),
    ("prepare shapes --out {tmp}/o --option train_size", {}, "--option: expected KEY=VALUE"),
    ("prepare shapes --out {tmp}/o --option =3", {}, "--option: expected KEY=VALUE"),
    ("prepare shapes --out {tmp}/o --options-json {{bad", {}, "--options-json is not valid JSON"),
    ("""prepare shapes --out {tmp}/o --options-json '{{"dense_tasks": "yes"}}'""", {}, "option dense_tasks must be a boolean"),
    ("""prepare shapes --out {tmp}/o --options-json '{{"train_size": "12"}}'""", {}, "option train_size must be an integer, got '12'"),
    ("prepare nosuchdata --out {tmp}/o", {}, "nosuchdata"),
    ("prepare shapes --out {tmp}/o --task nosuchtask", {}, "nosuchtask"),
    # --- mtlue prepare folder: the user's own files ----------------------------------------
    ("prepare mine --source folder --out {tmp}/o --option path={tmp}/in", {"in/labels.csv": LATIN1_LABELS, "in/images/x.png": b""}, "labels.csv is not UTF-8 text (byte 0xe9"),
    (
        "prepare mine --source folder --out {tmp}/o --option path={tmp}/in",
        {"in/labels.csv": "image,smiling\nx.png,1\n", "in/images/x.png": b"", "in/tasks.yaml": b"smiling: {kind: binary, description: \xe9}\n"},
        "tasks.yaml is not UTF-8 text",
    ),
    ("prepare mine --source folder --out {tmp}/o --option path={tmp}/in", {"in/images/x.png": b""}, "labels.csv does not exist"),
    ("prepare mine --source folder --out {tmp}/o --option path={tmp}/in", {"in/labels.csv": "file,smiling\nx.png,1\n", "in/images/x.png": b""}, "has no column 'image'"),
    ("prepare mine --source folder --out {tmp}/o --option path={tmp}/in", {"in/labels.csv": "image,a,a\nx.png,1,1\n", "in/images/x.png": b""}, "column names must be unique"),
    ("prepare mine --source folder --out {tmp}/o --option path={tmp}/in", {"in/labels.csv": "image,a\nx.png,1,2\n", "in/images/x.png": b""}, "line 2: 3 fields for 2 columns"),
    ("prepare mine --source folder --out {tmp}/in --option path={tmp}/in", {"in/labels.csv": "image,a\nx.png,1\n"}, "holds no manifest.json"),
    ("prepare mine --source folder --out {tmp}/o --option path=7", {}, "option path must be a string, got 7"),
    # --- mtlue show --out -----------------------------------------------------------------------
    ("show {data} --out {tmp}", USER, "is a folder; pass the path of the sample grid PNG file to write"),
    ("show {data} --out {tmp}/notes.txt", USER, "exists and is not an earlier sample grid PNG"),
    ("show {data} --out {data}", {}, "is the input DATA"),
    ("show {data} --out {data}/grid.png", {}, "lies inside the input DATA"),
    ("show {data} --out {tmp}/notes.txt/grid.png", USER, "is a file, not a folder"),
    ("show {tmp}/nodata", {}, "no prepared dataset at"),
    ("show {tmp}", USER, "missing manifest.json"),
    ("show {data} --samples x", {}, "invalid int value"),
    # --- mtlue poison --out / --preview ---------------------------------------------------------
    ("poison --data {data} --method lsp --out {tmp}/out", {"out/notes.txt": NOTE}, "holds no card.json of a perturbation store (notes.txt)"),
    ("poison --data {data} --method lsp --out {tmp}/out", {"out/a/b/c.txt": NOTE}, "(a/b/c.txt)"),
    ("poison --data {data} --method lsp --out {tmp}/out", {"out": "store", "out/notes.txt": NOTE}, "files that are not part of its perturbation store (notes.txt)"),
    ("poison --data {data} --method lsp --out {tmp}/out", {"out": "store", "out/old.safetensors": b"x"}, "(old.safetensors)"),
    ("poison --data {data} --method lsp --out {tmp}/out", {"out": "data"}, "holds no card.json"),
    ("poison --data {data} --method lsp --out {tmp}/out", {"out": "surrogate"}, "holds no card.json"),
    ("poison --data {data} --method lsp --out {tmp}/out", {"out/card.json": '{"format": "mtlue-dataset/1"}'}, "holds no card.json"),
    ("poison --data {data} --method lsp --out {tmp}/notes.txt", USER, "is a file, not a folder"),
    ("poison --data {data} --method lsp --out {data}", {}, "is the input --data"),
    ("poison --data {data} --method lsp --out {data}/lsp", {}, "lies inside the input --data"),
    ("poison --data {data} --method lsp --out {data}/..", {}, "holds the input --data"),
    ("poison --data {data} --method tap --surrogate-dir {surrogate} --out {surrogate}", {}, "is the input --surrogate-dir"),
    ("poison --data {data} --method lsp --out {tmp}/o --preview {tmp}", USER, "--preview {tmp} holds the input --out"),
    ("poison --data {data} --method lsp --out {tmp}/o --preview {tmp}/pics", {"pics/notes.txt": NOTE}, "--preview {tmp}/pics is a folder"),
    ("poison --data {data} --method lsp --out {tmp}/o --preview {tmp}/notes.txt", USER, "--preview {tmp}/notes.txt exists and is not an earlier preview PNG"),
    ("poison --data {data} --method lsp --out {tmp}/o --preview {tmp}/o", {}, "--preview {tmp}/o is the input --out"),
    ("poison --data {data} --method lsp --out {tmp}/o --preview {tmp}/o/p.png", {}, "lies inside the input --out"),
    ("poison --data {data} --method lsp --out {tmp}/o --seed -1", {}, "--seed -1 is out of range; give an integer from 0 to 4294967295"),
    ("poison --data {data} --method lsp --out {tmp}/o --seed 4294967296", {}, "--seed 4294967296 is out of range"),
    ("poison --data {data} --method lsp --out {tmp}/o --seed 99999999999999999999", {}, "is out of range"),
    ("poison --data {data} --method lsp --out {tmp}/o --seed x", {}, "invalid int value"),
    ("poison --data {data} --method nosuch --out {tmp}/o", {}, "nosuch"),
    ("poison --data {data} --method lsp --out {tmp}/o --set patch_size=1 --set patch_size=2", {}, "set more than once"),
    ("poison --data {data} --method lsp --out {tmp}/o --set nosuchkey=1", {}, "nosuchkey"),
    ("poison --data {data} --method lsp --out {tmp}/o --set patch_size", {}, "expected KEY=VALUE"),
    ("poison --data {tmp}/nodata --method lsp --out {tmp}/o", {}, "no prepared dataset at"),
    ("poison --data {data} --method lsp --out {tmp}/o --epsilon 300", {}, "epsilon"),
    ("poison --data {data} --method tap --out {tmp}/o --surrogate-dir {tmp}/nosurrogate", {}, "nosurrogate"),
    ("poison --data {data} --method lsp --out {tmp}/o --tag method=lsp", {}, "only apply with --tracking-uri"),
    # --- mtlue surrogate --out ------------------------------------------------------------------
    ("surrogate --data {data} --out {tmp}/out --epochs 1", {"out/notes.txt": NOTE}, "holds no surrogate.json of a surrogate (notes.txt)"),
    ("surrogate --data {data} --out {tmp}/out --epochs 1", {"out": "surrogate", "out/notes.txt": NOTE}, "files that are not part of its surrogate (notes.txt)"),
    ("surrogate --data {data} --out {tmp}/out --epochs 1", {"out": "store"}, "holds no surrogate.json"),
    ("surrogate --data {data} --out {tmp}/notes.txt --epochs 1", USER, "is a file, not a folder"),
    ("surrogate --data {data} --out {data} --epochs 1", {}, "is the input --data"),
    ("surrogate --data {data} --out {tmp}/o --checkpoint-dir {tmp}/o/ck --epochs 1", {}, "holds the input --checkpoint-dir"),
    ("surrogate --data {data} --out {tmp}/o --seed -1", {}, "--seed -1 is out of range"),
    ("surrogate --data {data} --out {tmp}/o --seed 99999999999999999999", {}, "--seed 99999999999999999999 is out of range"),
    ("surrogate --data {data} --out {tmp}/o --epochs 0", {}, "epochs must be at least 1"),
    ("surrogate --data {data} --out {tmp}/o --batch-size 1", {}, "batch_size must be at least 2"),
    ("surrogate --data {data} --out {tmp}/o --lr -1", {}, "lr must be a positive number"),
    ("surrogate --data {data} --out {tmp}/o --epochs x", {}, "invalid int value"),
    # --- mtlue victim --out ---------------------------------------------------------------------
    ("victim --data {data} --out {tmp} --epochs 1", USER, "is a folder; pass the path of the victim metrics.json file to write"),
    ("victim --data {data} --out {tmp}/notes.txt --epochs 1", USER, "exists and is not an earlier victim metrics.json"),
    ("victim --data {data} --out {tmp}/m.json --epochs 1", {"m.json": '{"format": "my-own/1"}'}, "exists and is not an earlier victim metrics.json"),
    ("victim --data {data} --out {data} --epochs 1", {}, "is the input --data"),
    ("victim --data {data} --out {data}/metrics.json --epochs 1", {}, "lies inside the input --data"),
    ("victim --data {data} --poison {store} --out {store}/metrics.json --epochs 1", {}, "lies inside the input --poison"),
    ("victim --data {data} --out {tmp}/notes.txt/m.json --epochs 1", USER, "is a file, not a folder"),
    ("victim --data {data} --out {tmp}/s{{seed}} --seed 0 1 --epochs 1", {"s1/x": NOTE}, "--out {tmp}/s1 is a folder"),
    ("victim --data {data} --out {tmp}/m.json --seed -1", {}, "--seed -1 is out of range"),
    ("victim --data {data} --out {tmp}/m.json --seed 4294967296", {}, "--seed 4294967296 is out of range"),
    ("victim --data {data} --out {tmp}/m.json --seed 99999999999999999999", {}, "is out of range"),
    ("victim --data {data} --out {tmp}/m{{seed}}.json --seed 0 -5", {}, "--seed -5 is out of range"),
    ("victim --data {data} --out {tmp}/m.json --seed 0 1", {}, "put {seed} in it"),
    ("victim --data {data} --out {tmp}/m{{seed}}.json --seed 1 1", {}, "more than once"),
    ("victim --data {data} --out {tmp}/m.json --epochs 0", {}, "epochs must be at least 1"),
    ("victim --data {data} --out {tmp}/m.json --milestones 0.9 0.5", {}, "milestones must be increasing"),
    ("victim --data {data} --out {tmp}/m.json --gamma 2", {}, "gamma must be in (0, 1]"),
    ("victim --data {data} --out {tmp}/m.json --num-threads 0", {}, "num_threads must be at least 1"),
    ("victim --data {data} --out {tmp}/m.json --amp maybe", {}, "--amp takes auto, on or off"),
    ("victim --data {data} --out {tmp}/m.json --defense a/b", {}, "defense is a name"),
    ("victim --data {data} --out {tmp}/m.json --tag backbone=vit --tracking-uri sqlite:///{tmp}/m.db", {}, "--tag backbone=vit but the job's own backbone"),
    ("victim --data {tmp}/nodata --out {tmp}/m.json", {}, "no prepared dataset at"),
    ("victim --data {data} --poison {tmp}/nostore --out {tmp}/m.json", {}, "nostore"),
    # --- mtlue submit ---------------------------------------------------------------------------
    (
        "submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/out",
        {"d.safetensors": "deltas", "out/notes.txt": NOTE}, "holds no card.json of a perturbation store (notes.txt)",
    ),
    (
        "submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/out",
        {"d.safetensors": "deltas", "out": "sub", "out/notes.txt": NOTE}, "files that are not part of its perturbation store",
    ),
    ("submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/out", {"d.safetensors": "deltas", "out/sub/x.bin": b"x"}, "(sub/x.bin)"),
    ("submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/d.safetensors", {"d.safetensors": "deltas"}, "is the input FILE"),
    ("submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}", {"d.safetensors": "deltas"}, "holds the input FILE"),
    ("submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {data}", {"d.safetensors": "deltas"}, "is the input --data"),
    ("submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/notes.txt", {"d.safetensors": "deltas", **USER}, "is a file, not a folder"),
    ("submit {tmp}/missing.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o", {}, "does not exist or is not a file"),
    ("submit {tmp}/dir --dataset shapes --name my-ue --data {data} --out {tmp}/o", {"dir/x": NOTE}, "does not exist or is not a file"),
    ("submit {tmp}/big.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o", {"big.safetensors": BIG_HEADER}, "bytes, above the 1,048,576 allowed"),
    ("submit {tmp}/liar.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o", {"liar.safetensors": LIAR_HEADER}, "lacks the safetensors header"),
    ("submit {tmp}/e.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o", {"e.safetensors": b""}, "it is empty"),
    ("submit {tmp}/p.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o", {"p.safetensors": b"\x80\x04\x95rest"}, "never loaded here"),
    ("submit {tmp}/z.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o", {"z.safetensors": b"PK\x03\x04rest"}, "never loaded here"),
    ("submit {tmp}/t.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o", {"t.safetensors": "just text\n"}, "not a valid safetensors file"),
    ("submit {tmp}/d.safetensors --dataset shapes --name Bad --data {data} --out {tmp}/o", {"d.safetensors": "deltas"}, "Bad"),
    ("submit {tmp}/d.safetensors --dataset shapes --name lsp --data {data} --out {tmp}/o", {"d.safetensors": "deltas"}, "lsp"),
    ("submit {tmp}/d.safetensors --dataset celeba --name my-ue --data {data} --out {tmp}/o", {"d.safetensors": "deltas"}, "holds the prepared dataset 'shapes', not 'celeba'"),
    ("submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {tmp}/nodata --out {tmp}/o", {"d.safetensors": "deltas"}, "no prepared dataset at"),
    ("submit {tmp}/d.safetensors --dataset shapes --name my-ue --data {data} --out {tmp}/o --epsilon 0", {"d.safetensors": "deltas"}, "epsilon"),
    # --- mtlue install-submission ----------------------------------------------------------------
    ("install-submission --data {data} --submission {sub} --out {tmp}/my-ue", {"my-ue/notes.txt": NOTE}, "holds no card.json"),
    ("install-submission --data {data} --submission {sub} --out {tmp}/my-ue", {"my-ue": "store", "my-ue/notes.txt": NOTE}, "files that are not part of its perturbation store"),
    ("install-submission --data {data} --submission {sub} --out {sub}", {}, "is the input --submission"),
    ("install-submission --data {data} --submission {sub} --out {data}/my-ue", {}, "lies inside the input --data"),
    ("install-submission --data {data} --submission {sub} --out {tmp}/my-ue --preview {tmp}", USER, "--preview {tmp} holds the input --out"),
    ("install-submission --data {data} --submission {sub} --out {tmp}/my-ue --preview {tmp}/pics", {"pics/a.png": b"x"}, "--preview {tmp}/pics is a folder"),
    ("install-submission --data {data} --submission {sub} --out {tmp}/my-ue --preview {tmp}/notes.txt", USER, "is not an earlier preview PNG"),
    ("install-submission --data {data} --submission {store} --out {tmp}/lsp", {}, "not a submission"),
    ("install-submission --data {data} --submission {sub} --out {tmp}/other", {}, "must be the folder named after the submission"),
    # --- mtlue check-config (also the Snakefile's validation) ------------------------------------
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "victims: {backbones: [nosuchnet]}\n"}, "victims.backbones: unknown backbone 'nosuchnet'; use one of"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "victims: {weightings: [nosuchw]}\n"}, "victims.weightings: unknown weighting(s) 'nosuchw'; use one of"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "victims: {backbones: [resnet18, nosuchnet]}\n"}, "'nosuchnet'"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "robustness: [{defenses: [none], backbones: [nosuchnet]}]\n"}, "robustness[0].backbones: unknown backbone"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "robustness: [{defenses: [none], weightings: [nosuchw]}]\n"}, "robustness[0].weightings: unknown weighting"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "surrogate: {backbone: nosuchnet}\n"}, "surrogate.backbone: unknown backbone"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "victims: {seeds: [-1]}\n"}, "victims.seeds.0: -1 is less than the minimum of 0"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "victims: {seeds: [4294967296]}\n"}, "greater than the maximum of 4294967295"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "surrogate: {seed: 99999999999999999999}\n"}, "surrogate.seed"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "poisons: {seed: -3}\n"}, "poisons.seed"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "datasets: {shapes: {options: {dense_tasks: maybe}}}\n"}, "datasets.shapes: dataset 'shapes': option dense_tasks must be a boolean"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "datasets: {shapes: {options: {train_size: abc}}}\n"}, "option train_size must be an integer"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "datasets: {shapes: {options: {nosuch: 1}}}\n"}, "has no option(s) nosuch"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "datasets: {shapes: {}}\nvictim: {}\n"}, "unknown key 'victim'"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "victims: {}\n"}, "'datasets' is a required property"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "- a\n- b\n"}, "must be a mapping"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "datasets: [unclosed\n"}, "is not valid YAML"),
    ("check-config {tmp}/c.yaml", {"c.yaml": b"datasets: {shapes: {description: caf\xe9}}\n"}, "is not UTF-8 text"),
    ("check-config {tmp}/missing.yaml", {}, "does not exist"),
    ("check-config {tmp}/c.yaml", {"c.yaml": "datasets: {'bad name': {source: shapes}}\n"}, "dataset name 'bad name'"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "poisons: {methods: [nosuchmethod]}\n"}, "nosuchmethod"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "victims: {defenses: [nosuchdefense]}\n"}, "nosuchdefense"),
    ("check-config {tmp}/c.yaml", {"c.yaml": CONFIG_HEAD + "victims: {seeds_per_job: 0}\n"}, "seeds_per_job"),
    # --- command-line misuse ----------------------------------------------------------------------
    ("list nosuchkind", {}, "invalid choice: 'nosuchkind'"),
    ("nosuchcommand", {}, "invalid choice: 'nosuchcommand'"),
    ("victim --out {tmp}/m.json", {}, "the following arguments are required: --data"),
]


@pytest.fixture(scope="module")
def world(tiny_shapes, surrogate, tmp_path_factory):
    """The shared inputs: a prepared dataset, an lsp store, a submission store, a surrogate folder."""
    root = tmp_path_factory.mktemp("bad_inputs")
    data = Path(tiny_shapes.root)
    assert main(["poison", "--data", str(data), "--method", "lsp", "--out", str(root / "lsp")]) == 0
    deltas = root / "deltas.safetensors"
    _write_deltas(deltas, tiny_shapes)
    sub = root / "submissions" / "my-ue"
    assert main(["submit", str(deltas), "--dataset", "shapes", "--name", "my-ue", "--data", str(data), "--out", str(sub)]) == 0
    final, _ = surrogate
    return {"data": data, "store": root / "lsp", "sub": sub, "surrogate": Path(final).parent, "shape": _train_shape(tiny_shapes)}


def _train_shape(dataset) -> tuple[int, ...]:
    return (len(dataset.split("train")), *dataset.image_shape)


def _write_deltas(path: Path, dataset) -> None:
    save_file({"deltas": np.zeros(_train_shape(dataset), dtype=np.int8)}, str(path))


def _lay_out(tmp: Path, files: dict[str, object], world: dict) -> None:
    for relative, content in files.items():
        target = tmp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if content in ("store", "data", "sub", "surrogate"):
            shutil.copytree(world[content], target)
        elif content == "deltas":
            save_file({"deltas": np.zeros(world["shape"], dtype=np.int8)}, str(target))
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(str(content), encoding="utf-8")


def _snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots``, with each file's sha256."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_the_table_is_large_and_its_cases_distinct():
    assert len(CASES) >= 100
    keys = [(argv, tuple(sorted((k, repr(v)) for k, v in files.items()))) for argv, files, _ in CASES]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(("argv", "files", "fragment"), CASES, ids=[f"{i:03d}-{argv.split()[0]}" for i, (argv, _, _) in enumerate(CASES)])
def test_bad_input_is_refused_in_one_line_and_touches_nothing(argv, files, fragment, world, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a default output path (resources/..., submissions/...) would land here
    _lay_out(tmp_path, files, world)
    laid_out = {relative: (tmp_path / relative).read_bytes() for relative in files if (tmp_path / relative).is_file()}
    shared = [world["data"], world["store"], world["sub"], world["surrogate"]]
    before = _snapshot(tmp_path, *shared)
    values = {key: str(world[key]) for key in ("data", "store", "sub", "surrogate")}
    command = shlex.split(argv.format(tmp=tmp_path, **values))
    try:
        status = main(command)
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2, err
    expected = fragment.format(tmp=tmp_path, **values) if "{" in fragment and "}" in fragment and "{seed}" not in fragment else fragment
    assert expected in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    assert _snapshot(tmp_path, *shared) == before
    for relative, content in laid_out.items():
        assert (tmp_path / relative).read_bytes() == content


# --------------------------------------------------------------------------------------------
# what the guards let through: a command's own earlier output is replaced whole, atomically


def _prepare(out: Path, size: int) -> int:
    return main(["prepare", "shapes", "--out", str(out), "--option", f"train_size={size}", "--option", "test_size=4",
                 "--option", "image_size=16", "--option", "crop_size=12", "--option", "dense_tasks=false"])


def test_prepare_replaces_its_own_output_and_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()  # the empty folder Snakemake makes for an output
    assert _prepare(out, 8) == 0
    assert _prepare(out, 6) == 0
    from mtlue.data import PreparedDataset

    assert len(PreparedDataset(out).split("train")) == 6
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_poison_and_submit_replace_their_own_store(world, tmp_path):
    out = tmp_path / "lsp"
    for _ in range(2):
        assert main(["poison", "--data", str(world["data"]), "--method", "lsp", "--out", str(out), "--preview", str(tmp_path / "p.png")]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["card.json", "deltas.safetensors"]
    deltas = tmp_path / "d.safetensors"
    save_file({"deltas": np.zeros(world["shape"], dtype=np.int8)}, str(deltas))
    submitted = tmp_path / "my-ue"
    for _ in range(2):
        assert main(["submit", str(deltas), "--dataset", "shapes", "--name", "my-ue", "--data", str(world["data"]), "--out", str(submitted)]) == 0
    assert deltas.is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["d.safetensors", "lsp", "my-ue", "p.png"]


def test_a_file_put_into_the_output_while_it_is_built_survives(world, tmp_path, monkeypatch, capsys):
    """The folder is checked again just before it is replaced: a file that arrived meanwhile stays."""
    from mtlue.poisons import store as store_module

    out = tmp_path / "lsp"
    original = store_module.save_file

    def save_and_intrude(*args, **kwargs):
        original(*args, **kwargs)
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_text(NOTE, encoding="utf-8")

    monkeypatch.setattr(store_module, "save_file", save_and_intrude)
    assert main(["poison", "--data", str(world["data"]), "--method", "lsp", "--out", str(out)]) == 2
    assert "holds no card.json of a perturbation store (notes.txt)" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lsp"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == NOTE


def test_the_next_write_removes_what_a_killed_one_left_behind(tmp_path):
    """kill -9 during a write leaves .NAME.XXXXXXXX.tmp; the next write of NAME removes it, and
    nothing of a sibling output whose name merely starts the same."""
    from mtlue.io import atomic_directory, atomic_write

    (tmp_path / ".surrogate.abcd1234.tmp").mkdir()
    (tmp_path / ".surrogate.abcd1234.tmp" / "epoch_000.pt").write_bytes(b"x")
    (tmp_path / ".surrogate.zz_99_zz.old").mkdir()
    (tmp_path / ".metrics.json.k3j4h5g6.tmp").write_bytes(b"{")
    kept = [".surrogate-checkpoints.abcd1234.tmp", ".surrogate.x.abcd1234.tmp", "notes.txt"]
    for name in kept:
        (tmp_path / name).write_text(NOTE, encoding="utf-8")
    with atomic_directory(tmp_path / "surrogate") as building:
        (building / "final.pt").write_bytes(b"model")
    with atomic_write(tmp_path / "metrics.json") as handle:
        handle.write("{}")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*kept, "metrics.json", "surrogate"])
