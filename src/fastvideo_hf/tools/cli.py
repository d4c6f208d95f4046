"""The `fastvideo-hf` command: preprocess, inspect, generate, plan, export-vsa, plot-loss, tiny-model and demo-data.

A refused setting (``SettingRefused``) is one line on stderr and exit 2, as ``preprocess`` answers one; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..refusal import SettingRefused
from .output_paths import output_file, output_folder


def _tiny_model(args: argparse.Namespace) -> int:
    from .tiny_models import save_tiny_wan_pipeline

    path = save_tiny_wan_pipeline(
        output_folder(args.output, "--output"), task=args.task, model=args.model, seed=args.seed
    )
    print(f"tiny {args.model} {args.task} pipeline written to {path} (load it with DiffusionPipeline.from_pretrained)")
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from .demo_data import write_demo_dataset

    if args.num_videos < (0 if args.mixed else 1):
        raise SettingRefused(f"--num_videos must be at least {0 if args.mixed else 1}, got {args.num_videos}")
    clips = write_demo_dataset(
        output_folder(args.output, "--output"),
        args.num_videos,
        seed=args.seed,
        with_bad_inputs=args.with_bad_inputs,
        mixed=args.mixed,
    )
    images = sum(clip.media_type == "image" for clip in clips)
    print(
        f"{len(clips) - images} demo videos and {images} images written to {args.output} "
        "(videos2caption.json, videos/metadata.jsonl)"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .dataset_summary import format_summary, summarize_dataset

    print(format_summary(summarize_dataset(args.dataset_dir)))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .inference import generate

    print(f"video written to {generate(args)}")
    return 0


def _plot_loss(args: argparse.Namespace) -> int:
    from .loss_curve import plot_loss_curves

    runs = dict(run.split("=", 1) if "=" in run else (run, run) for run in args.runs)
    output = output_file(args.output, "--output", ".png")
    for name, loss in plot_loss_curves(runs, output, args.window).items():
        if loss.logged == 1:
            print(f"{name}: loss {loss.first:.4f} (1 step logged)")
        else:
            print(
                f"{name}: loss {loss.first:.4f} (mean of the first {_steps(loss.steps)}) -> {loss.last:.4f} "
                f"(mean of the last {_steps(loss.steps)}; {loss.logged} steps logged)"
            )
    print(f"loss curve written to {args.output}")
    return 0


def _steps(count: int) -> str:
    return "step" if count == 1 else f"{count} steps"


def build_parser() -> argparse.ArgumentParser:
    from ..preprocess.cli import build_parser as build_preprocess_parser

    parser = argparse.ArgumentParser(prog="fastvideo-hf", description="Finetune Wan video models on your own videos.")
    commands = parser.add_subparsers(dest="command", required=True)

    preprocess = commands.add_parser(
        "preprocess", help="Videos + captions -> Parquet latent dataset (see --help).", add_help=False
    )
    preprocess.add_argument("-h", "--help", action="help", help="Show the preprocess flags.")
    build_preprocess_parser(preprocess)

    tiny = commands.add_parser("tiny-model", help="Write a tiny random diffusers-format Wan pipeline (offline).")
    tiny.add_argument("--task", default="t2v", choices=["t2v", "i2v"], help="Text- or image-to-video.")
    tiny.add_argument(
        "--model",
        default="wan2.1",
        choices=["wan2.1", "wan2.2-a14b", "wan2.2-ti2v-5b"],
        help="Architecture: Wan2.1, Wan2.2's two-expert A14B, or Wan2.2 TI2V 5B.",
    )
    tiny.add_argument("--output", required=True, help="Folder to write the pipeline to.")
    tiny.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    tiny.set_defaults(run=_tiny_model)

    demo = commands.add_parser("demo-data", help="Write demo H.264 clips of moving shapes with captions.")
    demo.add_argument("--output", required=True, help="Folder to write videos/ and the metadata files to.")
    demo.add_argument("--num_videos", type=int, default=8, help="How many clips to write.")
    demo.add_argument("--seed", type=int, default=0, help="Seed of shapes, colours and directions.")
    demo.add_argument(
        "--with_bad_inputs", action="store_true", help="Also list unusable inputs that preprocessing must skip."
    )
    demo.add_argument(
        "--mixed",
        action="store_true",
        help="Also write portrait and square clips of 1 to 12 s (one stored turned, as phones do) and still images "
        "(one JPEG with an EXIF orientation tag), for resolution buckets, frame buckets and clip extraction.",
    )
    demo.set_defaults(run=_demo_data)

    inspect = commands.add_parser("inspect", help="Summarize a latent dataset folder made by preprocess.")
    inspect.add_argument("dataset_dir", help="The --output_dir of a preprocess run.")
    inspect.set_defaults(run=_inspect)

    from .inference import build_parser as build_generate_parser

    generate = commands.add_parser(
        "generate", help="Generate a video with a base Wan model plus a LoRA or transformer."
    )
    build_generate_parser(generate).set_defaults(run=_generate)

    from .plan import build_parser as build_plan_parser
    from .plan import run as run_plan

    plan = commands.add_parser(
        "plan", help="Will a training run fit on my GPUs, and which memory savers to turn on (no weights read)."
    )
    build_plan_parser(plan).set_defaults(run=run_plan)

    from .vsa_export import build_parser as build_export_vsa_parser
    from .vsa_export import run_export

    export_vsa = commands.add_parser(
        "export-vsa", help="Rewrite a VSA full finetune with FastVideo's gate key names (or back to ours)."
    )
    build_export_vsa_parser(export_vsa).set_defaults(run=run_export)

    plot = commands.add_parser("plot-loss", help="Plot training loss curves from tensorboard logs.")
    plot.add_argument("runs", nargs="+", help="Log folders (OUT/logs), optionally as name=folder.")
    plot.add_argument("--output", required=True, help="PNG file to write.")
    plot.add_argument("--window", type=int, default=10, help="Steps of the moving average.")
    plot.set_defaults(run=_plot_loss)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "preprocess":
        from ..preprocess.cli import main as preprocess_main

        return preprocess_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SettingRefused as refusal:
        print(f"fastvideo-hf {args.command}: error: {refusal}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
