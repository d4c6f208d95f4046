"""Settings and inputs that used to slip through `fastvideo-hf preprocess`: each is refused or skipped clearly.

Every test drives the CLI (``main(argv)``, or a real process where the exit code and stderr are the point) on
real files, and checks what a user sees: the exit code, the one-line message, the rows, skipped.jsonl, the card.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, Features, Value, load_dataset

from fastvideo_hf.preprocess.cli import build_parser
from fastvideo_hf.preprocess.cli import main as preprocess_main
from fastvideo_hf.schema import columns_to_tensor

from ..helpers import PREPROCESS_SETTINGS


def cli_args(model_dir, output_dir, *, data_dir=None, dataset_name=None, **overrides) -> list[str]:
    """The preprocess command line with the test sizes; ``overrides`` replace any flag (``None`` drops it)."""
    settings = {"pretrained_model_name_or_path": model_dir, "output_dir": output_dir, **PREPROCESS_SETTINGS}
    settings.update(data_dir=data_dir, dataset_name=dataset_name, **overrides)
    argv = []
    for flag, value in settings.items():
        if value is not None:
            argv += [f"--{flag}", str(value)]
    return argv


def load_rows(output_dir: Path):
    """The folder read with plain ``datasets``, cached beside it: datasets keys its cache of a local folder on
    the folder's name and the card's sizes, so a fresh ``out`` of the same size could read an old run's rows."""
    return load_dataset(str(output_dir), split="train", cache_dir=str(output_dir.parent / "datasets-cache"))


def error_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]


def card_metadata(output_dir: Path) -> dict:
    return yaml.safe_load((output_dir / "README.md").read_text().split("---")[1])["fastvideo_hf"]


def skipped_reasons(output_dir: Path) -> dict[str, str]:
    lines = (output_dir / "skipped.jsonl").read_text().splitlines()
    return {item["id"]: item["reason"] for item in map(json.loads, lines)}


def write_listing(folder: Path, entries: list[dict], encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "videos2caption.json").write_text(json.dumps(entries, ensure_ascii=False), encoding=encoding)
    return folder


def clip(demo_dir: Path, index: int) -> str:
    return str(demo_dir / "videos" / f"clip_{index:04d}.mp4")


def clip_name(index: int) -> str:
    return f"clip_{index:04d}.mp4"


def demo_listing(folder: Path, demo_dir: Path, captions: list, encoding: str = "utf-8") -> Path:
    """A merged folder listing demo clip ``i`` as ``clip_name(i)`` with ``captions[i]``: its ``videos/`` links to the
    demo's, so the listed paths stay inside the folder (paths that leave it are skipped)."""
    folder.mkdir(parents=True)
    (folder / "videos").symlink_to(demo_dir / "videos", target_is_directory=True)
    return write_listing(folder, [{"path": clip_name(i), "cap": cap} for i, cap in enumerate(captions)], encoding)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("fps", "nan", r"--fps must be a positive number"),
        ("fps", "0", r"--fps must be a positive number"),
        ("fps", "-5", r"--fps must be a positive number"),
        ("fps", "inf", r"--fps must be a positive number"),
        ("height", "0", r"--height and --width must be positive multiples of 16, got 0x96"),
        ("width", "-16", r"--height and --width must be positive multiples of 16, got 64x-16"),
        ("num_frames", "0", r"--num_frames must be 4k\+1"),
    ],
)
def test_bad_fps_or_size_exits_2_with_one_line_before_any_work(
    tmp_path, tiny_model_dir, demo_dir, caplog, flag, value, message
):
    output = tmp_path / "out"
    code = preprocess_main(cli_args(tiny_model_dir, output, data_dir=demo_dir, **{flag: value}))
    assert code == 2
    (line,) = error_lines(caplog)
    assert re.search(message, line) and "\n" not in line
    assert not output.exists()


def test_size_the_models_patch_cannot_tile_is_refused(tmp_path, tiny_model_dir, demo_dir, caplog):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model-patch-4")
    config_path = model / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["patch_size"] = [1, 4, 4]  # 8x VAE downsampling x 4 = frames must be multiples of 32
    config_path.write_text(json.dumps(config))
    code = preprocess_main(cli_args(model, tmp_path / "out", data_dir=demo_dir, height=48))
    assert code == 2
    assert error_lines(caplog) == [
        "--height and --width must be multiples of 32x32 for this model (VAE downsampling x patch size), got 48x96"
    ]


def test_missing_model_path_in_a_real_process_is_one_line_exit_2_and_never_shows_the_token(tmp_path, demo_dir):
    """The process a user starts: exit 2, no traceback, the --hub_token warning, and the token nowhere."""
    token = "hf_doNotLogThisTokenAnywhere123"
    argv = cli_args(tmp_path / "no-such-model", tmp_path / "out", data_dir=demo_dir, hub_token=token)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "fastvideo_hf.preprocess", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert token not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"{tmp_path / 'no-such-model'}: no such folder" in errors[0]
    assert "visible to every user of this machine in the process list" in result.stderr
    assert "hf auth login" in result.stderr
    assert not (tmp_path / "out" / ".progress" / "manifest.json").exists()


def test_hub_token_help_says_prefer_the_login():
    help_text = " ".join(build_parser().format_help().split())
    assert "visible to every user in the process list" in help_text and "hf auth login" in help_text


def test_folder_that_is_not_a_pipeline_is_named(tmp_path, demo_dir, caplog):
    (tmp_path / "not-a-model").mkdir()
    assert preprocess_main(cli_args(tmp_path / "not-a-model", tmp_path / "out", data_dir=demo_dir)) == 2
    (line,) = error_lines(caplog)
    assert line.startswith(f"{tmp_path / 'not-a-model'} is not a diffusers-format Wan pipeline")


@pytest.mark.parametrize("name", ["user/not-reachable-offline", "missing/local/folder"])
def test_dataset_that_cannot_be_loaded_is_one_line_exit_2(tmp_path, tiny_model_dir, caplog, name):
    assert preprocess_main(cli_args(tiny_model_dir, tmp_path / "out", dataset_name=name)) == 2
    (line,) = error_lines(caplog)
    assert line.startswith(f"cannot load --dataset_name {name!r}: ") and "\n" not in line


@pytest.mark.parametrize("kind", ["file", "under_a_file", "unwritable"])
def test_output_dir_that_cannot_hold_the_dataset_exits_2_with_what_to_do(
    tmp_path, tiny_model_dir, demo_dir, caplog, kind
):
    (tmp_path / "a_file").write_text("not a folder")
    output = {
        "file": tmp_path / "a_file",
        "under_a_file": tmp_path / "a_file" / "out",
        # root may write anywhere on disk; sysfs refuses new entries to every user
        "unwritable": Path("/sys/fastvideo-hf-test-output"),
    }[kind]
    if kind == "unwritable" and not Path("/sys/kernel").is_dir():
        pytest.skip("needs a Linux sysfs")
    assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=demo_dir)) == 2
    (line,) = error_lines(caplog)
    if kind == "file":
        assert line == f"--output_dir {output} is a file: pass a folder (it is created if missing)"
    else:
        assert line.startswith(f"cannot write to --output_dir {output} (") and "pass a folder you can write to" in line


def test_a_run_that_failed_before_encoding_leaves_nothing_that_refuses_the_corrected_command(
    tmp_path, tiny_model_dir, demo_dir, caplog
):
    data = demo_listing(tmp_path / "raw", demo_dir, ["A red square moves right."])
    output = tmp_path / "out"
    assert preprocess_main(cli_args(tmp_path / "wrong-model", output, data_dir=data)) == 2
    assert not (output / ".progress" / "manifest.json").exists()
    caplog.clear()
    assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=data)) == 0, caplog.text
    assert card_metadata(output)["model"] == str(tiny_model_dir) and card_metadata(output)["num_rows"] == 1


def test_a_run_that_wrote_no_row_does_not_refuse_the_corrected_command(tmp_path, tiny_model_dir, demo_dir, caplog):
    data = demo_listing(tmp_path / "raw", demo_dir, ["A red square moves right."])
    output = tmp_path / "out"
    assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=data, num_frames=81)) == 1  # every clip too short
    caplog.clear()
    assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=data)) == 0, caplog.text
    assert "wrote no rows: starting over" in caplog.text
    assert card_metadata(output)["num_frames"] == 17 and card_metadata(output)["num_rows"] == 1


def test_merged_folder_captions_that_are_not_text_are_skipped(tmp_path, tiny_model_dir, demo_dir):
    captions = [12345, True, {"text": "A dict caption."}, ["A list caption.", 7], "A plain caption.", ["One.", "Two."]]
    data = demo_listing(tmp_path / "raw", demo_dir, captions)
    output = tmp_path / "out"
    assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=data)) == 0
    rows = {row["file_name"]: row["caption"] for row in load_rows(output)}
    assert rows == {clip_name(4): "A plain caption.", clip_name(5): rows[clip_name(5)]}
    assert rows[clip_name(5)] in ("One.", "Two.")
    reasons = skipped_reasons(output)
    assert sorted(reasons) == sorted(clip_name(i) for i in range(4))
    assert all(reason.startswith("caption is not text (") for reason in reasons.values())
    assert "int 12345" in reasons[clip_name(0)] and "bool True" in reasons[clip_name(1)]
    assert card_metadata(output)["skipped_reasons"] == {"caption is not text": 4}


@pytest.mark.parametrize(
    "values, feature",
    [
        ([12345, 678], Value("int64")),
        ([True, False], Value("bool")),
        ([{"text": "A red square."}, {"text": "A blue disc."}], {"text": Value("string")}),
    ],
)
def test_hf_dataset_caption_columns_that_are_not_text_are_skipped(
    tmp_path, tiny_model_dir, demo_dir, caplog, values, feature
):
    features = Features({"video": Value("string"), "caption": feature})
    dataset = Dataset.from_dict({"video": [clip(demo_dir, 0), clip(demo_dir, 1)], "caption": values}, features)
    (tmp_path / "hf").mkdir()
    dataset.to_parquet(tmp_path / "hf" / "train.parquet")
    output = tmp_path / "out"
    assert preprocess_main(cli_args(tiny_model_dir, output, dataset_name=tmp_path / "hf")) == 1
    assert "no usable input" in caplog.text
    reasons = skipped_reasons(output)
    assert list(reasons) == ["train-00000000", "train-00000001"]
    assert all(reason.startswith("caption is not text (") for reason in reasons.values())


def test_the_same_file_listed_twice_gives_one_row_and_a_recorded_duplicate(tmp_path, tiny_model_dir, demo_dir):
    data = tmp_path / "raw"
    (data / "videos").mkdir(parents=True)
    shutil.copy(clip(demo_dir, 0), data / "videos" / "a.mp4")
    shutil.copy(clip(demo_dir, 1), data / "videos" / "b.mp4")
    entries = [
        {"path": "a.mp4", "cap": "A red square."},
        {"path": "b.mp4", "cap": "A blue disc."},
        {"path": "a.mp4", "cap": "The same clip again."},
        {"path": "videos/../videos/a.mp4", "cap": "And under another spelling."},
    ]
    write_listing(data, entries)
    output = tmp_path / "out"
    assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=data)) == 0
    rows = load_rows(output)
    assert sorted(rows["id"]) == ["a.mp4", "b.mp4"]
    assert dict(zip(rows["id"], rows["caption"], strict=True))["a.mp4"] == "A red square."
    assert skipped_reasons(output) == {
        "a.mp4#1": "duplicate: same file as a.mp4",
        "videos/../videos/a.mp4": "duplicate: same file as a.mp4",
    }
    meta = card_metadata(output)
    assert (meta["num_rows"], meta["num_skipped"], meta["skipped_reasons"]) == (2, 2, {"duplicate": 2})


def test_long_captions_are_kept_counted_in_the_card_and_warned_once_across_processes(
    tmp_path, tiny_model_dir, demo_dir, caplog, monkeypatch
):
    long_caption = " ".join(["red square moving right"] * 200)  # well over 512 tokens
    captions = [long_caption, "A short caption.", long_caption + " again"]
    data = demo_listing(tmp_path / "raw", demo_dir, captions)
    output = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "2")
    # one input per shard: rank 0 encodes clips 0 and 2, rank 1 clip 1 and then writes the card
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=data, samples_per_file=1)) == 0
    assert card_metadata(output)["captions_truncated"] == 2
    assert "| captions | 2 longer than 512 tokens" in (output / "README.md").read_text()
    warnings = [record.getMessage() for record in caplog.records if "captions_truncated" in record.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"2 captions (first: {clip_name(0)}) are longer")
    rows = {row["id"]: row for row in load_rows(output)}
    assert rows[clip_name(0)]["caption"] == long_caption
    assert columns_to_tensor(rows[clip_name(0)], "text_embedding").shape[0] == 512
    assert columns_to_tensor(rows[clip_name(1)], "text_embedding").shape[0] < 512


def test_listing_that_is_not_utf8_is_named_and_a_byte_order_mark_is_accepted(
    tmp_path, tiny_model_dir, demo_dir, caplog
):
    latin1 = demo_listing(tmp_path / "latin1", demo_dir, ["Un carré rouge."], encoding="latin-1")
    assert preprocess_main(cli_args(tiny_model_dir, tmp_path / "out1", data_dir=latin1)) == 2
    (line,) = error_lines(caplog)
    assert line.startswith(f"{latin1 / 'videos2caption.json'} is not UTF-8 (byte 0xe9 at offset ")
    assert "save it as UTF-8" in line
    with_bom = demo_listing(tmp_path / "bom", demo_dir, ["Un carré rouge."], encoding="utf-8-sig")
    assert preprocess_main(cli_args(tiny_model_dir, tmp_path / "out2", data_dir=with_bom)) == 0
    assert load_rows(tmp_path / "out2")["caption"] == ["Un carré rouge."]


def test_listed_paths_that_leave_the_data_folder_are_skipped_with_the_reason(tmp_path, tiny_model_dir, demo_dir):
    """A listing may come from someone else (a shared or downloaded folder): it must not make a run encode, and
    perhaps push, files from elsewhere on the disk. Files the folder's owner linked into it are theirs to use."""
    private = tmp_path / "private"
    private.mkdir()
    shutil.copy(clip(demo_dir, 1), private / "secret.mp4")
    shutil.copy(clip(demo_dir, 2), private / "other.mp4")
    data = tmp_path / "shared"
    (data / "videos" / "sub").mkdir(parents=True)
    shutil.copy(clip(demo_dir, 0), data / "videos" / "own.mp4")
    (data / "videos" / "linked.mp4").symlink_to(clip(demo_dir, 3))
    climbing, absolute = "../../private/secret.mp4", str(private / "other.mp4")
    entries = [
        {"path": "own.mp4", "cap": "A clip of the folder."},
        {"path": "linked.mp4", "cap": "A clip its owner linked in."},
        {"path": "sub/../own.mp4", "cap": "A clip of the folder, spelled with a .. that stays inside."},
        {"path": climbing, "cap": "A file two folders up."},
        {"path": absolute, "cap": "A file anywhere."},
    ]
    write_listing(data, entries)
    output = tmp_path / "out"
    assert preprocess_main(cli_args(tiny_model_dir, output, data_dir=data)) == 0
    assert sorted(load_rows(output)["id"]) == ["linked.mp4", "own.mp4"]
    reasons = skipped_reasons(output)
    assert reasons == {
        "sub/../own.mp4": "duplicate: same file as own.mp4",
        climbing: reasons[climbing],
        absolute: reasons[absolute],
    }
    assert reasons[climbing].startswith(f"path leaves the data folder: {climbing!r} is above the folder (..)")
    assert reasons[absolute].startswith(f"path leaves the data folder: {absolute!r} is absolute")
    assert card_metadata(output)["skipped_reasons"] == {"duplicate": 1, "path leaves the data folder": 2}
