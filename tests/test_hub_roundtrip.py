"""The whole loop through the (loopback) Hub, each step a real process with the real clients, as a user runs it.

Base model on the Hub -> `fastvideo-hf preprocess --push_to_hub` -> plain `load_dataset("user/x")` (no code of
ours) -> `train_wan_lora.py --dataset_name user/x --push_to_hub` -> `WanPipeline.load_lora_weights("user/lora")`.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from fastvideo_hf.tools.demo_data import write_demo_dataset

from .helpers import PREPROCESS_SETTINGS, REPO
from .loopback_hub import TOKEN

FASTVIDEO_HF = str(Path(sys.executable).parent / "fastvideo-hf")

PLAIN_LOAD = """
import hashlib, json, sys
from datasets import load_dataset

rows = load_dataset("user/x", split="train")
assert "fastvideo_hf" not in sys.modules
print(json.dumps(sorted(
    [row["id"], row["caption"], hashlib.sha256(row["vae_latent_bytes"]).hexdigest(),
     hashlib.sha256(row["text_embedding_bytes"]).hexdigest()]
    for row in rows
)))
"""

GENERATE = """
import json, torch
from diffusers import WanPipeline

pipe = WanPipeline.from_pretrained("user/tiny-wan")
inputs = {"prompt": "A red circle", "height": 32, "width": 32, "num_frames": 5, "num_inference_steps": 2}
generate = lambda: pipe(**inputs, output_type="pt", generator=torch.Generator().manual_seed(0)).frames
base = generate()
pipe.load_lora_weights("user/lora")
config = pipe.transformer.peft_config["default_0"]
print(json.dumps({"difference": (generate() - base).abs().max().item(), "rank": config.r, "alpha": config.lora_alpha}))
"""


def run(command, env, cwd):
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command[:3]}:\n{result.stderr[-4000:]}"
    return result.stdout


def card_metadata(readme: bytes) -> dict:
    return yaml.safe_load(readme.decode().split("---")[1])


def test_preprocess_push_load_train_push_and_load_the_lora_all_through_the_hub(tmp_path, tiny_model_dir, loopback_hub):
    loopback_hub.add_folder("user/tiny-wan", tiny_model_dir)
    videos, latents, lora = tmp_path / "videos", tmp_path / "latents", tmp_path / "lora"
    write_demo_dataset(videos, num_videos=2, seed=3)
    env = loopback_hub.env(tmp_path / "hf-home")  # one user's machine: one HF cache for every step

    command = [FASTVIDEO_HF, "preprocess", "--pretrained_model_name_or_path", "user/tiny-wan"]
    command += ["--data_dir", str(videos), "--output_dir", str(latents), "--push_to_hub", "--hub_dataset_id", "user/x"]
    for key, value in PREPROCESS_SETTINGS.items():
        command += [f"--{key}", str(value)]
    run(command, env, tmp_path)
    local_rows = pq.read_table(latents / "data").to_pylist()
    expected = sorted(
        [
            row["id"],
            row["caption"],
            hashlib.sha256(row["vae_latent_bytes"]).hexdigest(),
            hashlib.sha256(row["text_embedding_bytes"]).hexdigest(),
        ]
        for row in local_rows
    )
    assert len(expected) == 2

    assert json.loads(run([sys.executable, "-c", PLAIN_LOAD], env, tmp_path)) == expected

    command = [sys.executable, str(REPO / "training_scripts" / "train_wan_lora.py")]
    command += ["--pretrained_model_name_or_path", "user/tiny-wan", "--dataset_name", "user/x"]
    command += ["--output_dir", str(lora), "--report_to", "none", "--seed", "7", "--max_train_steps", "2"]
    command += ["--learning_rate", "5e-3", "--rank", "4", "--lora_alpha", "8", "--validation_steps", "100"]
    command += ["--checkpointing_steps", "1", "--push_to_hub", "--hub_model_id", "user/lora"]
    run(command, env, tmp_path)
    pushed = loopback_hub.repo_files("user/lora")
    assert pushed["pytorch_lora_weights.safetensors"] == (lora / "pytorch_lora_weights.safetensors").read_bytes()
    assert not any(path.startswith(("checkpoint-", "logs/")) for path in pushed)
    card = card_metadata(pushed["README.md"])
    assert card["base_model"] == "user/tiny-wan" and card["datasets"] == ["user/x"]
    dataset_files = loopback_hub.repo_files("user/x", "dataset")
    assert card_metadata(dataset_files["README.md"])["fastvideo_hf"]["model"] == "user/tiny-wan"
    assert all(TOKEN.encode() not in content for content in [*pushed.values(), *dataset_files.values()])

    generated = json.loads(run([sys.executable, "-c", GENERATE], env, tmp_path))
    assert all("datasets-server." in request for request in loopback_hub.stray_requests)  # refused, as offline
    assert generated["difference"] > 1e-4 and (generated["rank"], generated["alpha"]) == (4, 8)
