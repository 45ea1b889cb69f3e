"""Flow backends against videos whose exact flow is known (camera translation, rotation, zoom; sprites)."""
import numpy as np
import pytest

from diffmem.errors import DiffmemError
from diffmem.flow import FlowPolicy, get_estimator, to_common_resolution, video_flow
from diffmem.world.synthetic import camera_video, random_trajectory, sprite_video

# Mean endpoint error bounds (px), interior 80 % of the frame. Measured on this machine (128 px):
# DIS 0.008 / 0.036 / 0.030, Farneback 0.008 / 0.082 / 0.061 for translate / rotate / zoom.
CASES = {"translate": ((2.5, -1.5), {"dis": 0.05, "farneback": 0.05}),
         "rotate": (3.0, {"dis": 0.1, "farneback": 0.2}),
         "zoom": (1.04, {"dis": 0.1, "farneback": 0.15})}


def epe(est, gt, margin=0.1):
    h, w = gt.shape[-3:-1]
    m = int(margin * min(h, w))
    return float(np.linalg.norm(est - gt, axis=-1)[..., m:h - m, m:w - m].mean())


@pytest.mark.parametrize("backend", ["dis", "farneback"])
@pytest.mark.parametrize("kind", list(CASES))
def test_flow_matches_known_camera_motion(backend, kind):
    amount, bounds = CASES[kind]
    frames, gt = camera_video(kind, amount, n_frames=3, size=(128, 128), seed=3)
    est = get_estimator(backend).video(frames)
    assert est.shape == gt.shape and est.dtype == np.float32
    err = epe(est, gt)
    # The bound is far below the error of predicting no motion at all (the mean true magnitude, 1-3 px).
    assert err < bounds[backend] < 0.2 * np.linalg.norm(gt, axis=-1).mean()


def test_translation_sign_convention():
    # Content moving right and up: flow (+dx, -dy) everywhere (x right, y down).
    frames, _ = camera_video("translate", (2.0, -1.0), n_frames=2, size=(64, 64), seed=1)
    f = get_estimator("dis").pair(frames[0], frames[1])
    med = np.median(f[8:-8, 8:-8].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(med, [2.0, -1.0], atol=0.05)


def test_moving_sprite_flow_inside_the_sprite():
    rng = np.random.default_rng(0)
    traj = random_trajectory(4, (128, 128), 24, rng, speed=(2.0, 3.0))
    frames, gt = sprite_video(traj, "disk", 24, (128, 128), sprite_seed=5, background_seed=6)
    est = get_estimator("dis").video(frames)
    on = np.linalg.norm(gt, axis=-1) > 0
    err = np.linalg.norm(est - gt, axis=-1)
    assert err[on].mean() < 0.5  # measured 0.24: motion boundaries make this harder than a camera move
    assert err[~on].mean() < 0.1  # the still background stays still


def test_flow_is_in_pixels_of_the_common_resolution():
    # A 64 px video at short side 128: every displacement doubles.
    frames, gt = camera_video("translate", (1.5, 1.0), n_frames=3, size=(64, 96), seed=2)
    flows = video_flow(frames, FlowPolicy("dis", short_side=128))
    assert flows.shape == (2, 128, 192, 2)
    med = np.median(flows[:, 16:-16, 16:-16].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(med, [3.0, 2.0], atol=0.1)
    native = video_flow(frames, FlowPolicy("dis", short_side=None))
    assert native.shape == (2, 64, 96, 2)


def test_common_resolution_keeps_aspect_and_uint8():
    frames = np.zeros((2, 90, 160, 3), np.uint8)
    out = to_common_resolution(frames, 128)
    assert out.shape == (2, 128, 228, 3) and out.dtype == np.uint8
    assert to_common_resolution(frames, None).shape == frames.shape


def test_grey_frames_and_single_frame():
    frames, _ = camera_video("translate", (1.0, 0.0), n_frames=2, size=(32, 32))
    grey = frames.mean(-1).astype(np.uint8)
    assert get_estimator("dis").video(grey).shape == (1, 32, 32, 2)
    assert get_estimator("dis").video(frames[:1]).shape == (0, 32, 32, 2)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(DiffmemError, match="unknown flow backend 'nope'"):
        get_estimator("nope")
    with pytest.raises(DiffmemError, match="uint8"):
        get_estimator("dis").video(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(DiffmemError, match=r"\(T, H, W, 3\)"):
        get_estimator("dis").video(np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(DiffmemError, match="does not match"):
        video_flow(np.zeros((2, 8, 8, 3), np.uint8), FlowPolicy("farneback"), get_estimator("dis"))
    with pytest.raises(DiffmemError, match="DIS preset"):
        get_estimator("dis", preset="slow")


def test_one_dis_estimator_shared_by_threads_gives_each_the_flow_it_gives_alone():
    """The audit computes several clips' flow at once with one estimator: each thread gets its own OpenCV
    object, so the flows are those of one thread."""
    from concurrent.futures import ThreadPoolExecutor

    est = get_estimator("dis")
    videos = [camera_video("translate", (0.5 * s, -1.0), n_frames=4, size=(64, 64), seed=s)[0] for s in range(8)]
    alone = [est.video(v) for v in videos]
    with ThreadPoolExecutor(4) as ex:
        shared = list(ex.map(est.video, videos))
    assert all(np.array_equal(a, b) for a, b in zip(alone, shared))
    assert not np.array_equal(alone[0], alone[1])  # different inputs, different flows: the check can fail
