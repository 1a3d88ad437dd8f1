"""DOPE's post-processing and camera handling against the ROS node's: peaks, assignment, the
incomplete-cuboid skip, PnP, smoothing, camera_info reading and the resize arithmetic."""
import cv2
import numpy as np
import pytest

import infer_helpers as ih
from benchmarks import dope_node_post
from pose_train_py27 import dope_decode
from pose_train_py27.cuboid import cuboid_vertices, rotation_angle_deg, rvec_to_quat


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    return ih.synth_frames(folder, 30)


def _decode_all(frames, settings):
    posed, loc_mm, rot_deg = 0, [], []
    for path in frames:
        b, a, K, cubes, _ = ih.frame_maps(path, settings)
        found = [d for d in dope_decode.detect(b, a, K, ih.DIMS_CM, settings) if d["location"]]
        if len(found) == 1:
            posed += 1
            loc_mm.append(1000 * np.linalg.norm(np.subtract(found[0]["location"],
                                                            cubes[0]["location"])))
            rot_deg.append(rotation_angle_deg(found[0]["quaternion_xyzw"],
                                              cubes[0]["quaternion_xyzw"]))
    return posed, loc_mm, rot_deg


def test_ideal_maps_decode_to_the_annotated_pose_with_the_trained_scale_smoothing(frames):
    """128 px crops: the sidecar's sigma (0.96) poses all 30 frames; the node's 3 loses some."""
    assert ih.SETTINGS["sigma"] == pytest.approx(0.96) and ih.SETTINGS["downscale_height"] == 128
    posed, loc_mm, rot_deg = _decode_all(frames, ih.SETTINGS)
    assert posed == 30
    assert np.median(loc_mm) < 5.0 and np.median(rot_deg) < 1.0
    node_posed, _, _ = _decode_all(frames, dict(ih.SETTINGS, sigma=3.0))
    assert node_posed < posed


@pytest.mark.parametrize("sigma", [0.96, 3.0])
def test_vectorised_peaks_and_assignment_equal_the_node_loops(frames, sigma):
    rng = np.random.default_rng(1)
    settings = dict(ih.SETTINGS, sigma=sigma)
    compared = 0
    for path in frames[:10]:
        b, a, _, _, _ = ih.frame_maps(path, noise=0.02, rng=rng)
        b, a = np.maximum(b, np.roll(b, 7, axis=1)), a + np.roll(a, 7, axis=1)
        ours = dope_decode.find_objects(b, a, settings)
        with np.errstate(invalid="ignore", divide="ignore"):
            node = dope_node_post.find_objects(b, a, settings)
        assert len(ours) == len(node)
        for o, n in zip(ours, node):
            assert np.allclose(o["centroid"], n["centroid"]) and o["score"] == n["score"]
            for p, q in zip(o["corners"], n["corners"]):
                assert (p is None) == (q is None)
                compared += p is not None
                assert p is None or np.allclose(p, q)
    assert compared > 30   # corners actually compared, not only empty slots


def _without_corner(path, corner):
    b, a, K, cubes, _ = ih.frame_maps(path)
    b = b.copy()
    b[corner] = 0.0          # the network found no peak for this corner
    return b, a, K


@pytest.mark.parametrize("corner", [0, 3, 6])
def test_an_object_missing_a_corner_gets_no_pose_as_on_the_robot(frames, corner):
    """DOPE's node skips an incomplete cuboid; pose-train posed it from 8 points, so eval
    counted detections the robot never publishes. --partial keeps that as an opt-in."""
    compared = 0
    for path in frames[:6]:
        for b, a, K in (_without_corner(path, corner), ih.frame_maps(path)[:3]):
            ours = [d for d in dope_decode.detect(b, a, K, ih.DIMS_CM, ih.SETTINGS) if d["location"]]
            node = dope_node_post.find_object_poses(b, a, K, ih.DIMS_CM, ih.SETTINGS)
            assert len(ours) == len(node)
            for d, (tvec, _, img) in zip(ours, node):
                assert np.allclose(np.array(d["location"]) * 100, tvec, atol=1e-3)
                assert np.allclose(d["points_found"], img) and d["partial"] is False
                compared += 1
        b, a, K = _without_corner(path, corner)
        partial = dope_decode.detect(b, a, K, ih.DIMS_CM, dict(ih.SETTINGS, partial=True))
        assert len(partial) == 1 and partial[0]["location"] and partial[0]["partial"] is True
        assert partial[0]["points_found"][corner] is None
        unposed = dope_decode.detect(b, a, K, ih.DIMS_CM, ih.SETTINGS)   # no pose: neither kind
        assert len(unposed) == 1 and unposed[0]["location"] is None and unposed[0]["partial"] is None
    assert compared == 6       # the complete frames, posed by both


@pytest.mark.parametrize("keep", [9, 6, 5, 4])
def test_pnp_recovers_the_pose_from_4_to_9_points(keep):
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    rvec, tvec = np.array([0.3, -0.5, 0.2]), np.array([5.0, -3.0, 60.0])   # cm
    pts = cv2.projectPoints(cuboid_vertices(ih.DIMS_CM), rvec, tvec, K, None)[0].reshape(9, 2)
    given = [tuple(p) if i in (0, 2, 5, 7, 8, 1, 3, 4, 6)[:keep] else None
             for i, p in enumerate(pts)]
    location, quat, projected = dope_decode.solve_pnp(given, ih.DIMS_CM, K)
    assert np.allclose(location, tvec, atol=1e-3)
    assert rotation_angle_deg(quat, rvec_to_quat(rvec)) < 1e-3
    assert np.abs(projected - pts).max() < 1e-3


def test_pnp_needs_four_points():
    K = np.eye(3)
    assert dope_decode.solve_pnp([(1.0, 1.0)] * 3 + [None] * 6, ih.DIMS_CM, K) == (None,) * 3


def test_smoothing_is_scipys_gaussian_filter_kernel():
    """scipy's filter (truncate 4, mode reflect) on a unit impulse is its normalised kernel."""
    impulse = np.zeros((41, 41), np.float32)
    impulse[20, 20] = 1
    out = dope_decode.smooth(impulse, 3.0)
    x = np.arange(-12, 13)
    kernel = np.exp(-x ** 2 / 18.0)
    kernel /= kernel.sum()
    assert np.allclose(out[8:33, 20], kernel * kernel[12], atol=1e-7)
    assert out[:8].max() == 0 and out.sum() == pytest.approx(1.0, abs=1e-5)


def test_unrectified_frames_pose_with_the_distortion_as_the_node_does():
    K = np.array([[300.0, 0, 158], [0, 302.0, 121], [0, 0, 1]])
    dist = [-0.21, 0.05, 0.001, -0.002, 0.0]
    rvec, tvec = np.array([0.3, -0.5, 0.2]), np.array([6.0, -4.0, 50.0])
    pts = cv2.projectPoints(cuboid_vertices(ih.DIMS_CM), rvec, tvec, K, np.array(dist))[0].reshape(9, 2)
    points = [tuple(p) for p in pts]
    location, _, projected = dope_decode.solve_pnp(points, ih.DIMS_CM, K, dist)
    assert np.allclose(location, tvec, atol=1e-3) and np.abs(projected - pts).max() < 1e-3
    wrong, _, _ = dope_decode.solve_pnp(points, ih.DIMS_CM, K)
    assert np.linalg.norm(wrong - tvec) > 0.5       # cm: ignoring D moves the object


class _IdealNet(object):
    """Stands in for the network: the maps a perfect DOPE gives for known points."""

    def __init__(self, points_px, size):
        from pose_train.dope.targets import ideal_maps
        import torch
        b, a = ideal_maps(points_px, size)
        self.maps = ([torch.from_numpy(b)[None]], [torch.from_numpy(a)[None]])
        self.size = size

    def __call__(self, x):
        assert (x.shape[3], x.shape[2]) == self.size      # the node's resize, exactly
        return self.maps


def test_the_frame_and_camera_are_scaled_with_the_nodes_arithmetic():
    """An odd-sized frame with non-square pixels, taller than downscale_height: pose-train's
    resize and camera scaling give the node's pose."""
    import torch
    from pose_train_py27 import dope_infer
    from pose_train_py27.dope_io import camera_matrix, make_camera
    width, height = 333, 251
    cam = make_camera(300.0, 340.0, 166.5, 125.5, width, height)
    settings = dict(ih.SETTINGS, downscale_height=128)
    scale = float(settings["downscale_height"]) / height                # the node's arithmetic
    size = (int(scale * width), int(scale * height))
    K = camera_matrix(cam)
    rvec, tvec = np.array([0.2, 0.4, -0.1]), np.array([2.0, 1.0, 40.0])
    pts = cv2.projectPoints(cuboid_vertices(ih.DIMS_CM), rvec, tvec, K, None)[0].reshape(1, 9, 2)
    net = _IdealNet(pts * scale, size)
    rgb = np.zeros((height, width, 3), np.uint8)
    dets = dope_infer.infer_frame(net, torch.device("cpu"), rgb, cam, ih.DIMS_CM, settings,
                                  {"mean": [0.5] * 3, "std": [0.5] * 3})[0]
    Ks = K.copy()
    Ks[:2] *= scale
    node = dope_node_post.find_object_poses(net.maps[0][0][0].numpy(), net.maps[1][0][0].numpy(),
                                            Ks, ih.DIMS_CM, settings)
    assert len(dets) == len(node) == 1
    assert np.allclose(np.array(dets[0]["location"]) * 100, node[0][0], atol=1e-3)
    assert np.linalg.norm(np.array(dets[0]["location"]) * 100 - tvec) < 1.0    # and it is right


def test_a_partial_pose_through_the_camera_is_no_pose(frames, monkeypatch):
    """--partial posed garbage maps at 1e-13 m from P3P: a box the camera would sit inside."""
    b, a, K = _without_corner(frames[0], 3)
    real = dope_decode.solve_pnp

    def near(*args):
        location, quaternion, projected = real(*args)
        return np.array([0.0, 0.0, 1e-11]), quaternion, projected
    monkeypatch.setattr(dope_decode, "solve_pnp", near)
    partial = dope_decode.detect(b, a, K, ih.DIMS_CM, dict(ih.SETTINGS, partial=True))
    assert len(partial) == 1 and partial[0]["location"] is None and partial[0]["partial"] is None
    complete = dope_decode.detect(*ih.frame_maps(frames[0])[:3], ih.DIMS_CM, ih.SETTINGS)
    assert complete[0]["location"] is not None   # the node publishes whatever PnP gives
