"""`diffmem flow VIDEO --out FILE`: write the colour-coded optical flow of a video, to look at."""
from __future__ import annotations

import json

from .options import add_threads, count, natural, positive

HELP = "write the colour-coded optical flow of a video"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "flow", help=HELP,
        description="Estimate the optical flow of a video and write it colour-coded (hue = direction: right red, "
                    "down yellow-green, left cyan, up violet; saturation = speed, white = still) as mp4 or gif.")
    p.add_argument("video", help="input video (or any file diffmem can read)")
    p.add_argument("--out", required=True, help="output file: .mp4, .gif, .webm, .mov, .mkv or .avi")
    p.add_argument("--flow", dest="backend", default="dis", choices=("dis", "farneback", "raft"),
                   help="flow backend (default: dis; raft needs torchvision)")
    p.add_argument("--short-side", type=natural, default=128,
                   help="resize frames to this short side before flow (default 128; 0 = native size)")
    p.add_argument("--fps", type=positive, default=None, help="sample frames at this rate (default: every frame)")
    p.add_argument("--max-frames", type=count, default=None, help="use at most this many frames")
    p.add_argument("--max-magnitude", type=positive, default=None,
                   help="flow magnitude (px/frame at the common resolution) shown fully saturated "
                        "(default: the 99th percentile over the video)")
    p.add_argument("--flow-only", action="store_true", help="only the flow, not [frame | flow] side by side")
    add_threads(p)
    p.set_defaults(func=run, _parser=p)
    return p


def run(args) -> int:
    from ..flow.visualize import write_flow_video

    summary = write_flow_video(args.video, args.out, backend=args.backend, short_side=args.short_side or None,
                               fps=args.fps, max_magnitude=args.max_magnitude, side_by_side=not args.flow_only,
                               max_frames=args.max_frames)
    print(json.dumps(summary))
    return 0
