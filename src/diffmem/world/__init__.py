"""The embedded world: a synthetic, captioned video corpus with planted duplicates and ground truth,
and its own judge of generated clips.

It is what `diffmem demo`, the tests and the benchmarks run on. The library's layers (io ... guidance)
never import this package; studies, the CLI, tests and benchmarks do.

- `make_world(out, seed, size)` builds one (`build`); `load_ground_truth` reads what it planted;
- `ClipSpec`, `render_clip`, `trajectory`, `true_flow`, `caption` re-render any clip exactly (`clips`);
- `WorldAlignment` judges whether a generated clip shows the captioned sprite and motion (`judge`);
- `diffmem.world.synthetic`: videos with exact optical flow for flow and motion-metric checks;
- `python -m diffmem.world.calibrate`: the run that calibrated the built-in descriptor's tau_c.
"""
from .assets import BACKGROUNDS, SPRITES, Sprite, load_sprite, load_texture
from .build import SIZES, WorldSize, WorldSummary, item_specs, load_ground_truth, make_world
from .clips import (
                    COMMON_MOTIONS,
                    DIRECTIONS,
                    MOTION_PARAMS,
                    MOTIONS,
                    SIGNATURE_MOTIONS,
                    ClipSpec,
                    Trajectory,
                    caption,
                    caption_of,
                    render_clip,
                    texture_side,
                    trajectory,
                    true_flow,
)
from .judge import WorldAlignment, WorldCaption, parse_world_caption

__all__ = [
    "make_world", "WorldSummary", "WorldSize", "SIZES", "load_ground_truth", "item_specs",
    "ClipSpec", "Trajectory", "trajectory", "render_clip", "true_flow", "caption", "caption_of", "texture_side",
    "Sprite", "load_sprite", "load_texture", "SPRITES", "BACKGROUNDS",
    "MOTIONS", "COMMON_MOTIONS", "SIGNATURE_MOTIONS", "DIRECTIONS", "MOTION_PARAMS",
    "WorldAlignment", "WorldCaption", "parse_world_caption",
]
