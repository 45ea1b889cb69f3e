"""Types of numeric options: every value is checked when the command line is parsed, before any work.

A bad value ends the command with argparse's one-line error naming the option ("argument --fps: must
be a positive number, got 'nan'") and exit code 2: NaN, infinities, out-of-range and non-numeric
values never reach the library (where they made black videos, untrained checkpoints or no flags with
exit code 0).
"""
from __future__ import annotations

import argparse
import math


def _number(text: str, kind) -> float | int:
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def _checked(kind, ok, what: str):
    def parse(text: str):
        v = _number(text, kind)
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v
    parse.__name__ = what  # argparse shows the type's name in some messages
    return parse


count = _checked(int, lambda v: v >= 1, "a positive integer")            # samples, steps, batch sizes, sizes
natural = _checked(int, lambda v: v >= 0, "an integer >= 0")             # seeds, counts that may be zero
positive = _checked(float, lambda v: v > 0, "a positive number")         # rates, learning rates, scales
nonnegative = _checked(float, lambda v: v >= 0, "a number >= 0")         # guidance, eta, AMG's c1..c3
unit = _checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")      # Jaccard thresholds
fraction = _checked(float, lambda v: 0 < v < 1, "a number in (0, 1)")    # false-positive rates
similarity = _checked(float, lambda v: -1 <= v <= 1, "a similarity in [-1, 1]")  # cosine thresholds


def add_threads(parser, default: int | None = 1) -> None:
    """--threads N: CPU threads for torch, FAISS and OpenCV (`diffmem.device.set_threads`)."""
    why = ("default 1: the tiny models' and small frames' kernels are small, and on a shared machine extra "
           "threads mostly wait on each other" if default == 1 else "default: each library's own choice")
    parser.add_argument("--threads", type=count, default=default, metavar="N",
                        help=f"CPU threads for torch, FAISS and OpenCV ({why})")


def add_root(parser) -> None:
    """--root DIR: where a manifest's relative paths resolve (default: the manifest file's folder)."""
    parser.add_argument("--root", default=None, metavar="DIR",
                        help="folder the manifest's relative media paths resolve against and must stay inside "
                             "(default: the manifest file's folder), e.g. a CSV in meta/ for videos in /data")


MANIFEST_PRESETS = ("default", "webvid", "laion")  # diffmem.data.manifest.PRESETS (not imported: --help stays fast)
_COLUMN_OPTIONS = ("preset", "id_column", "caption_column", "path_column", "path_template")


def add_manifest_options(parser) -> None:
    """--root, --preset and the column options: how a training manifest table is read, for every command
    that reads one (`diffmem.data.manifest.ColumnMap`; `manifest_columns` turns them into one)."""
    add_root(parser)
    g = parser.add_argument_group("training manifest layout (CSV / TSV / JSONL / Parquet tables)")
    g.add_argument("--preset", choices=MANIFEST_PRESETS, default=None,
                   help="the table's layout: default (columns path, id, caption), webvid (WebVid CSV: id videoid, "
                        "caption name, video {page_dir}/{videoid}.mp4), laion (img2dataset parquet: id key, caption "
                        "caption, image {key:.5}/{key}.jpg, the shard folder being the key's first 5 digits)")
    g.add_argument("--id-column", default=None, metavar="COL", help="column of the item ids (overrides the preset's)")
    g.add_argument("--caption-column", default=None, metavar="COL",
                   help="column of the captions (overrides the preset's)")
    g.add_argument("--path-column", default=None, metavar="COL",
                   help="column of the media paths (overrides the preset's path or template)")
    g.add_argument("--path-template", default=None, metavar="TEMPLATE",
                   help="media path built from the row's columns, e.g. '{page_dir}/{videoid}.mp4' (str.format over "
                        "the values as strings; relative to --root; overrides the preset's path)")


def manifest_columns(args):
    """The `ColumnMap` the options of `add_manifest_options` give, or None when none was given (the table's
    own path, id and caption columns). A bad combination or template is a one-line DiffmemError."""
    if all(getattr(args, k, None) is None for k in _COLUMN_OPTIONS):
        return None
    from ..data.manifest import column_map
    from ..errors import DiffmemError

    try:
        return column_map(args.preset, id=args.id_column, caption=args.caption_column, path=args.path_column,
                          template=args.path_template)
    except ValueError as e:
        raise DiffmemError(f"{e} (--preset / --id-column / --caption-column / --path-column / --path-template)") from None


def add_sample_size(parser) -> None:
    """--frames / --height / --width: the size of the samples a model makes (diffusers models; the tiny
    models have one size). The same three options wherever a model samples: generate, detect, extract, amg."""
    parser.add_argument("--frames", type=count, default=None, help="frames per video (diffusers video models; default: the model's)")
    parser.add_argument("--height", type=count, default=None, help="output height (diffusers models; default: the model's)")
    parser.add_argument("--width", type=count, default=None, help="output width (diffusers models; default: the model's)")


def add_motion_policy(group, *, fps: bool = False) -> None:
    """--flow / --motion-k (and --motion-fps where a motion index is built): the motion policy's options,
    one definition for `diffmem audit` and `diffmem index build --motion`, read back by `motion_policy`."""
    group.add_argument("--flow", default="dis", choices=("dis", "farneback", "raft"),
                       help="optical flow backend (default dis; raft needs torchvision)")
    group.add_argument("--motion-k", type=count, default=4, help="flow steps per motion window, k of OFS-k (default 4)")
    if fps:
        group.add_argument("--motion-fps", type=positive, default=8.0,
                           help="rate the videos are sampled at for flow (default 8; an audit of generated videos "
                                "of a lower rate needs an index at their rate)")


def motion_policy(args):
    """The MotionPolicy the options of `add_motion_policy` give."""
    from ..features.motion import MotionPolicy
    from ..flow import FlowPolicy

    return MotionPolicy(flow=FlowPolicy(args.flow), k=args.motion_k, fps=getattr(args, "motion_fps", 8.0))


DTYPES = ("float32", "bfloat16", "float16")  # = diffmem.models.registry.DTYPES (not imported: --help stays light)


def add_dtype(parser) -> None:
    """--dtype: the dtype a model is loaded and sampled in (frames and scores stay float32)."""
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="dtype of the model's weights and latents: float32 (default), bfloat16 (CPU or CUDA), "
                             "float16 (meant for CUDA: on a CPU it runs slowly). Frames and scores are float32")


def add_model_loading(parser) -> None:
    """--dtype and --config: how MODEL is loaded. The same options wherever a model samples: generate,
    detect, extract, amg evaluate."""
    add_dtype(parser)
    parser.add_argument("--config", dest="model_config", default=None, metavar="FOLDER_OR_HUB_ID",
                        help="for a single-file checkpoint MODEL (model.safetensors, original Stable Diffusion "
                             "layout): a diffusers StableDiffusionPipeline folder, or the id of one in the local "
                             "Hugging Face cache, giving its configuration (diffmem downloads nothing)")


def add_amg_knobs(group, prefix: str = "", preset: bool = True) -> None:
    """AMG's knobs (`guidance.AMGConfig`, with its defaults) and, with `preset`, the authors' preset, as
    `--{prefix}c1` etc.: one definition for `diffmem generate --amg` (prefix "amg-") and `diffmem amg
    evaluate` (no prefix; there the preset is a variant)."""
    from ..guidance.config import AMGConfig
    from ..guidance.reference import PRESETS

    a = AMGConfig()
    if preset:
        group.add_argument(f"--{prefix}preset", dest="amg_preset", default=None, choices=PRESETS,
                           help="AMG as its authors' code runs it instead of diffmem's default (amg-sd-2024: their "
                                "Stable Diffusion step logic, scales and schedule; amg-iddpm-2024: their CIFAR-10 "
                                "step, pixel nL2 on x_t guiding DDPM's posterior mean, with --scheduler ddpm; the "
                                "knobs below do not apply)")
    group.add_argument(f"--{prefix}c1", dest="c1", type=nonnegative, default=a.c1,
                       help=f"despecification constant (default {a.c1})")
    group.add_argument(f"--{prefix}c2", dest="c2", type=nonnegative, default=a.c2,
                       help=f"caption deduplication constant (default {a.c2})")
    group.add_argument(f"--{prefix}c3", dest="c3", type=nonnegative, default=a.c3,
                       help=f"dissimilarity constant (default {a.c3})")
    group.add_argument(f"--{prefix}schedule", dest="schedule", default=a.schedule,
                       choices=("exponential", "parabolic", "constant"),
                       help=f"threshold schedule lambda_t (default {a.schedule})")
    group.add_argument(f"--{prefix}content-lo", dest="content_lo", type=positive, default=a.content_lo,
                       help=f"lambda at t = T, as a fraction of tau_c (default {a.content_lo})")
    group.add_argument(f"--{prefix}content-hi", dest="content_hi", type=positive, default=a.content_hi,
                       help=f"lambda at t = 0, as a fraction of tau_c (default {a.content_hi})")
    group.add_argument(f"--{prefix}motion-lo", dest="motion_lo", type=positive, default=a.motion_lo,
                       help=f"motion lambda at t = T, as a fraction of tau_m (default {a.motion_lo})")
    group.add_argument(f"--{prefix}motion-hi", dest="motion_hi", type=positive, default=a.motion_hi,
                       help=f"motion lambda at t = 0, as a fraction of tau_m (default {a.motion_hi})")
    group.add_argument(f"--{prefix}no-motion", dest="no_motion", action="store_true",
                       help="content similarity only (no motion channel)")
    group.add_argument(f"--{prefix}caption-mode", dest="caption_mode", default=a.caption_mode,
                       choices=("frequent", "neighbour"),
                       help="y_N: the neighbour's caption, or the most frequent duplicated caption among its top "
                            f"neighbours (default {a.caption_mode})")
    group.add_argument(f"--{prefix}guard", dest="amg_guard", default=None, metavar="CALIBRATION",
                       help="a detection calibration made with --seeds 1 (`diffmem detect --calibrate`): the similarity "
                            "is measured only for samples whose first-step magnitude it flags (free: CFG computes "
                            "both predictions); the rest are sampled as without AMG" +
                            ("" if prefix else "; the 'guarded' variant uses it, and 'sail' takes its wen threshold as target"))
    group.add_argument(f"--{prefix}check-every", dest="check_every", type=count, default=a.check_every,
                       help=f"measure the similarity every k-th step (and every step once guided); default {a.check_every}")


def amg_config_from_args(args):
    """The `AMGConfig` that the flags of `add_amg_knobs` describe."""
    from ..guidance.config import AMGConfig

    return AMGConfig(c1=args.c1, c2=args.c2, c3=args.c3, schedule=args.schedule, motion=not args.no_motion,
                     caption_mode=args.caption_mode, content_lo=args.content_lo, content_hi=args.content_hi,
                     motion_lo=args.motion_lo, motion_hi=args.motion_hi, check_every=args.check_every)
