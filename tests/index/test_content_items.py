"""The items of a content index (`content_items`): one per training item, from its metadata rows."""
import pandas as pd

from diffmem.data.manifest import Item
from diffmem.index import VectorIndex, build_content_index
from diffmem.index.content import content_items
from diffmem.io.image import write_image
from diffmem.io.video import write_video
from diffmem.world.clips import ClipSpec, render_clip


def test_items_in_index_order_with_path_caption_kind(tmp_path):
    write_video(tmp_path / "v0.mp4", render_clip(ClipSpec.make("cat", "grass", "linear", "right", size=32,
                                                               n_frames=8)), fps=8)
    write_image(tmp_path / "im0.png", render_clip(ClipSpec.make("face", "stars", size=32, n_frames=1))[0])
    write_video(tmp_path / "v1.mp4", render_clip(ClipSpec.make("rocket", "bricks", "circle", "cw", size=32,
                                                               n_frames=8)), fps=8)
    pd.DataFrame([{"id": "v0", "path": "v0.mp4", "caption": "a cat <moves>"},
                  {"id": "im0", "path": "im0.png", "caption": ""},
                  {"id": "v1", "path": "v1.mp4", "caption": "a rocket"}]).to_parquet(tmp_path / "train.parquet")
    build_content_index(tmp_path / "train.parquet", tmp_path / "ix", fps=4.0, progress=False)
    idx = VectorIndex.open(tmp_path / "ix")
    assert len(idx.metadata) == 4 + 1 + 4  # several frame rows per video, one per image
    items = content_items(idx)
    assert items == [Item("v0", (tmp_path / "v0.mp4").resolve(), "a cat <moves>", "video"),
                     Item("im0", (tmp_path / "im0.png").resolve(), "", "image"),
                     Item("v1", (tmp_path / "v1.mp4").resolve(), "a rocket", "video")]
    assert [it.id for it in content_items(idx, ids={"v1", "im0", "nope"})] == ["im0", "v1"]
    assert content_items(VectorIndex.create(tmp_path / "empty", dim=4, policy={"name": "x"})) == []
