"""Images as 1-frame inputs: decoded as a viewer shows them, in 8-bit RGB, and listed by every kind of source.

Every file here is a real image written by Pillow, opened back through the code path a user's file takes.
"""

import io
import json

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

from fastvideo_hf.preprocess.image_decode import (
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    decode_image,
    extension,
    image_format_of_header,
    is_animated,
)
from fastvideo_hf.preprocess.sources import ANIMATED_WEBP, HFDatasetSource, MergedFolderSource
from fastvideo_hf.preprocess.video_decode import decode_clip

from ..helpers import every_input


def upright_picture(height: int = 48, width: int = 80) -> np.ndarray:
    """Flat colour blocks that no turn or mirror maps onto themselves (and that survive JPEG)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = (230, 20, 20)
    pixels[: height // 2, width // 2 :] = (20, 230, 20)
    pixels[height // 2 :, : width // 4] = (20, 20, 230)
    pixels[height // 2 :, width // 4 :] = (230, 230, 20)
    return pixels


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def jpeg_with_orientation(path, upright: np.ndarray, orientation: int) -> None:
    # orientation 6 = "rotate 90 degrees clockwise to show": the stored picture is the upright one turned back
    stored = np.rot90(upright, k=1) if orientation == 6 else upright
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    PILImage.fromarray(np.ascontiguousarray(stored)).save(path, quality=95, exif=exif)


def animated(path, num_frames: int = 5) -> None:
    frames = [PILImage.fromarray(np.full((16, 24, 3), 40 * i, np.uint8)) for i in range(num_frames)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def test_exif_orientation_6_jpeg_decodes_as_the_upright_picture(tmp_path):
    upright = upright_picture()
    jpeg_with_orientation(tmp_path / "phone.jpg", upright, 6)
    clip = decode_image(str(tmp_path / "phone.jpg"))
    assert clip.frames.shape == (1, 48, 80, 3) and clip.frames.dtype == torch.uint8
    assert (clip.indices, clip.source_num_frames, clip.source_fps) == ([0], 1, 0.0)
    assert (clip.source_width, clip.source_height) == (80, 48)
    assert mean_difference(clip.frames[0].numpy(), upright) < 4
    # the stored (unrotated) picture is far from it: the tag really was applied
    stored = np.asarray(PILImage.open(tmp_path / "phone.jpg"))
    assert stored.shape == (80, 48, 3)


def test_cmyk_jpeg_gives_the_rgb_picture(tmp_path):
    upright = upright_picture()
    PILImage.fromarray(upright).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert PILImage.open(tmp_path / "print.jpg").mode == "CMYK"
    frame = decode_image(str(tmp_path / "print.jpg")).frames[0].numpy()
    assert mean_difference(frame, upright) < 4


def test_palette_png_with_a_transparent_colour_composites_on_black(tmp_path):
    indices = np.array([[0, 1, 2, 1]], np.uint8)
    image = PILImage.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (253 * 3))
    image.save(tmp_path / "palette.png", transparency=2)
    frame = decode_image(str(tmp_path / "palette.png")).frames[0].numpy()
    assert frame.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 0], [0, 255, 0]]]
    image.save(tmp_path / "opaque.png")  # no transparency: the palette's colours as they are
    assert decode_image(str(tmp_path / "opaque.png")).frames[0, 0, 2].tolist() == [10, 20, 30]


def test_rgba_and_la_are_composited_on_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [200, 100, 50, 0]]], np.uint8)
    PILImage.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    frame = decode_image((tmp_path / "rgba.png").read_bytes()).frames[0].numpy()
    assert frame.tolist() == [[[200, 100, 50], [100, 50, 25], [0, 0, 0]]]
    la = np.array([[[90, 255], [90, 0]]], np.uint8)
    PILImage.fromarray(la, mode="LA").save(tmp_path / "la.png")
    assert decode_image(str(tmp_path / "la.png")).frames[0].tolist() == [[[90, 90, 90], [0, 0, 0]]]


def test_16_bit_png_is_scaled_to_8_bit_not_clipped(tmp_path):
    values = np.array([[0, 128, 129, 257, 1000, 32768, 65278, 65535]], np.uint16)
    PILImage.fromarray(values).save(tmp_path / "depth.png")
    assert PILImage.open(tmp_path / "depth.png").mode.startswith("I")
    frame = decode_image(str(tmp_path / "depth.png")).frames[0].numpy()
    expected = [0, 0, 1, 1, 4, 128, 254, 255]  # round(v * 255 / 65535)
    assert frame[..., 0].tolist() == [expected] and (frame[..., 0] == frame[..., 2]).all()


def test_corrupt_and_missing_images_are_skipped_with_a_reason(tmp_path):
    PILImage.fromarray(upright_picture()).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"^corrupt or truncated image \(OSError: .*\)$"):
        decode_image(str(tmp_path / "cut.jpg"))
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(ImageDecodeError, match="^not an image: Pillow cannot identify"):
        decode_image(str(tmp_path / "text.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"^empty file \(0 bytes\)$"):
        decode_image(str(tmp_path / "empty.png"))
    with pytest.raises(ImageDecodeError, match="^file not found"):
        decode_image(str(tmp_path / "gone.png"))


def test_file_names_and_signatures(tmp_path):
    assert all(extension(name) in IMAGE_EXTENSIONS for name in ("a.jpg", "b.JPEG", "c.png", "d.webp", "e.bmp"))
    assert not any(extension(name) in IMAGE_EXTENSIONS for name in ("a.mp4", "b.gif", "c", "d.jpg.mov"))
    for fmt, suffix in (("JPEG", "jpeg"), ("PNG", "png"), ("BMP", "bmp"), ("GIF", "gif"), ("WEBP", "webp")):
        buffer = io.BytesIO()
        PILImage.fromarray(upright_picture(8, 8)).save(buffer, format=fmt)
        assert image_format_of_header(buffer.getvalue()[:12]) == suffix
    assert image_format_of_header(b"\x00\x00\x00\x18ftypmp42") is None


def merged_folder(tmp_path, files: dict[str, bytes | None]):
    """A merged folder holding ``files`` (None: listed but absent), each captioned with its name."""
    (tmp_path / "videos").mkdir(parents=True)
    for name, data in files.items():
        if data is not None:
            (tmp_path / "videos" / name).write_bytes(data)
    entries = [{"path": name, "cap": f"caption of {name}"} for name in files]
    (tmp_path / "videos2caption.json").write_text(json.dumps(entries))
    return MergedFolderSource(tmp_path)


def test_merged_folder_lists_images_and_routes_animated_files_to_video(tmp_path):
    animated(tmp_path / "moving.gif")
    animated(tmp_path / "moving.webp")
    PILImage.fromarray(upright_picture(8, 8)).save(tmp_path / "still.gif")
    jpeg_with_orientation(tmp_path / "photo.jpg", upright_picture(), 6)
    data = (tmp_path / "photo.jpg").read_bytes()
    files = {name: (tmp_path / name).read_bytes() for name in ("moving.gif", "moving.webp", "still.gif")}
    files |= {"photo.jpg": data, "cut.jpg": data[:300], "clip.mp4": None, "missing.png": None}
    source = merged_folder(tmp_path / "raw", files)
    inputs = {item.id: item for item in every_input(source)}
    assert {name: item.media_type for name, item in inputs.items()} == {
        "moving.gif": "video",
        "moving.webp": "video",
        "still.gif": "image",
        "photo.jpg": "image",
        "cut.jpg": "image",
        "clip.mp4": "video",
        "missing.png": "image",
    }
    assert inputs["moving.webp"].problem == ANIMATED_WEBP
    assert all(item.problem is None for name, item in inputs.items() if name != "moving.webp")
    # the animated GIF is a video the video decoder reads: 5 frames at 10 fps
    clip = decode_clip(source.video_for(inputs["moving.gif"]), fps=10, num_frames=5)
    assert clip.frames.shape == (5, 16, 24, 3) and clip.frames[:, 0, 0, 0].tolist() == [0, 40, 80, 120, 160]
    assert (
        mean_difference(decode_image(source.video_for(inputs["photo.jpg"])).frames[0].numpy(), upright_picture()) < 4
    )
    with pytest.raises(ImageDecodeError, match="^corrupt or truncated image"):
        decode_image(source.video_for(inputs["cut.jpg"]))
    assert is_animated(source.video_for(inputs["moving.gif"])) and not is_animated(
        source.video_for(inputs["still.gif"])
    )


def test_hf_dataset_with_an_image_column_loaded_from_parquet(tmp_path):
    jpeg_with_orientation(tmp_path / "phone.jpg", upright_picture(), 6)
    animated(tmp_path / "moving.gif")
    features = Features({"picture": Image(), "caption": Value("string")})
    # the bytes held in the Parquet file itself, as a Hub image dataset holds them
    pictures = [{"bytes": (tmp_path / name).read_bytes(), "path": name} for name in ("phone.jpg", "moving.gif")]
    dataset = Dataset.from_dict({"picture": pictures, "caption": ["a photo", "a gif"]}, features=features)
    (tmp_path / "ds").mkdir()
    dataset.to_parquet(tmp_path / "ds" / "train.parquet")
    source = HFDatasetSource(str(tmp_path / "ds"), video_column="picture")
    photo, gif = every_input(source)
    assert (photo.media_type, gif.media_type) == ("image", "video")
    assert photo.file_name == "phone.jpg" and photo.captions == ["a photo"]
    assert isinstance(source.video_for(photo), bytes)
    assert mean_difference(decode_image(source.video_for(photo)).frames[0].numpy(), upright_picture()) < 4
    assert decode_clip(source.video_for(gif), fps=10, num_frames=5).frames.shape[0] == 5


def test_imagefolder_with_metadata_jsonl_uses_its_image_column(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for index in range(3):
        PILImage.fromarray(np.full((16, 32, 3), 50 * index, np.uint8)).save(folder / f"img_{index}.png")
        rows.append({"file_name": f"img_{index}.png", "caption": f"grey level {index}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = HFDatasetSource(str(folder))  # --video_column left at its default, "video"
    assert source.video_column == "image"
    inputs = every_input(source)
    assert [(item.file_name, item.media_type, item.captions) for item in inputs] == [
        (f"img_{index}.png", "image", [f"grey level {index}"]) for index in range(3)
    ]
    assert decode_image(source.video_for(inputs[2])).frames[0, 0, 0].tolist() == [100, 100, 100]
    with pytest.raises(ValueError, match=r"no column\(s\) \['clip'\]; its columns are \['image', 'caption'\]"):
        HFDatasetSource(str(folder), video_column="clip")


def test_bytes_and_path_columns_tell_images_from_videos(tmp_path):
    PILImage.fromarray(upright_picture(8, 8)).save(tmp_path / "still.png")
    animated(tmp_path / "moving.gif")
    names = ["still.png", "moving.gif"]
    for kind in ("bytes", "path"):
        values = [(tmp_path / name).read_bytes() if kind == "bytes" else str(tmp_path / name) for name in names]
        features = Features({"media": Value("binary" if kind == "bytes" else "string"), "caption": Value("string")})
        folder = tmp_path / kind
        folder.mkdir()
        Dataset.from_dict({"media": values, "caption": ["x", "y"]}, features=features).to_parquet(folder / "a.parquet")
        source = HFDatasetSource(str(folder), video_column="media")
        assert [item.media_type for item in every_input(source)] == ["image", "video"], kind


def test_images_become_one_frame_rows_upright_and_i2v_skips_them(tmp_path, tiny_model_dir, demo_dir):
    """A merged folder of a clip, an upright PNG and the same picture as a phone JPEG (stored turned + EXIF 6),
    through the real CLI: both pictures are 1-frame rows with the same (upright) latent; image-to-video skips them."""
    from fastvideo_hf.preprocess.cli import main as preprocess_main
    from fastvideo_hf.schema import columns_to_tensor
    from fastvideo_hf.tools.tiny_models import save_tiny_wan_pipeline

    from ..helpers import rows_by_id

    data = tmp_path / "raw"
    data.mkdir()
    upright = upright_picture(64, 96)
    PILImage.fromarray(upright).save(data / "upright.png")
    jpeg_with_orientation(data / "phone.jpg", upright, 6)
    PILImage.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(data / "sideways.png")
    (data / "clip_0000.mp4").symlink_to(demo_dir / "videos" / "clip_0000.mp4")  # listed paths stay in the folder
    entries = [{"path": "clip_0000.mp4", "cap": "A clip."}]
    entries += [{"path": name, "cap": "A picture."} for name in ("upright.png", "phone.jpg", "sideways.png")]
    (data / "videos2caption.json").write_text(json.dumps(entries))
    common = ["--pretrained_model_name_or_path", str(tiny_model_dir), "--data_dir", str(data), "--fps", "16"]
    common += ["--resolution_buckets", "64x96", "--frame_buckets", "1,17"]
    assert preprocess_main([*common, "--output_dir", str(tmp_path / "t2v")]) == 0

    rows = rows_by_id(tmp_path / "t2v")
    for name in ("upright.png", "phone.jpg"):
        row = rows[name]
        assert (row["media_type"], row["num_frames"], row["width"], row["height"]) == ("image", 1, 96, 64)
        assert row["vae_latent_shape"] == [16, 1, 8, 12]
    assert rows["clip_0000.mp4"]["vae_latent_shape"] == [16, 5, 8, 12]
    latent = {name: columns_to_tensor(rows[name], "vae_latent") for name in rows}
    # the sideways PNG (no tag) is what ignoring EXIF would give: the phone JPEG must be far from it
    assert (latent["phone.jpg"] - latent["upright.png"]).abs().mean() < 0.2 * (
        latent["sideways.png"] - latent["upright.png"]
    ).abs().mean()

    i2v_model = save_tiny_wan_pipeline(tmp_path / "tiny-wan-i2v", task="i2v")
    i2v = [*common, "--pretrained_model_name_or_path", str(i2v_model), "--output_dir", str(tmp_path / "i2v")]
    assert preprocess_main([*i2v, "--task", "i2v"]) == 0
    skipped = [json.loads(line) for line in (tmp_path / "i2v" / "skipped.jsonl").read_text().splitlines()]
    assert {item["id"]: item["reason"] for item in skipped} == {
        name: "a still image has no motion to learn for image-to-video"
        for name in ("upright.png", "phone.jpg", "sideways.png")
    }
    assert list(rows_by_id(tmp_path / "i2v")) == ["clip_0000.mp4"]
