"""`synth dope --mesh`: your object rendered headless (moderngl through EGL), labelled as DOPE's
trainer reads it. The meshes are OBJ/MTL/PNG files written by hand in the tests (mesh_files),
PLY and GLB files written by trimesh; every dataset is the CLI's own output."""
import glob
import json
import os

import cv2
import numpy as np
import pytest

import mesh_files
from infer_helpers import local_cli, write_weights
from pose_train.dope import data, render, symmetry
from pose_train.dope.geometry import intrinsics_matrix, project, random_quat_xyzw
from pose_train_py27.cuboid import cuboid_vertices, quat_xyzw_to_matrix, rvec_to_quat

SIZE, OFFSET = (0.1, 0.08, 0.06), (0.02, -0.01, 0.015)


def _frames(folder):
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "[0-9]*.json"))):
        out.append((path[:-5], json.load(open(path))))
    return out


def _K(ann):
    i = ann["camera_data"]["intrinsics"]
    return intrinsics_matrix(i["fx"], i["fy"], i["cx"], i["cy"])


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    return mesh_files.textured_box(str(tmp_path_factory.mktemp("mesh")), SIZE, OFFSET)


@pytest.fixture(scope="module")
def alone(box, tmp_path_factory):
    """Frames with the object alone (no distractors), segmentation and depth written."""
    out = tmp_path_factory.mktemp("alone")
    assert local_cli("synth", "dope", "--mesh", box, "--out", out, "--n", 6, "--width", 200,
                     "--height", 150, "--max_distractors", 0, "--extras", "--seed", 4,
                     "--workers", 1) == 0
    return str(out)


def test_cuboid_labels_are_the_mesh_box_projected(box, alone):
    """projected_cuboid = the OBJ's own bounding box (read back from the file, its centre off
    the origin) posed by the frame's pose, to 1e-6 px; the location is the box centre."""
    vertices = np.array([[float(v) for v in line.split()[1:]] for line in open(box)
                         if line.startswith("v ")])
    low, high = vertices.min(0), vertices.max(0)
    frames = _frames(alone)
    assert len(frames) == 6
    for stem, ann in frames:
        (obj,) = ann["objects"]
        assert obj["class"] == "box" and obj["name"] == "box_0"
        np.testing.assert_allclose(obj["cuboid_dimensions"], high - low, atol=1e-7)
        uv, cam = project(cuboid_vertices(high - low), obj["quaternion_xyzw"], obj["location"],
                          _K(ann))
        np.testing.assert_allclose(obj["projected_cuboid"], uv, atol=1e-6)
        assert (cam[:, 2] > 0).all()
        assert ann["camera_data"]["width"] == 200 and ann["camera_data"]["height"] == 150


def _inside(points, width, height):
    """Pixel centres inside the convex hull of ``points``, and each centre's distance to it."""
    hull = cv2.convexHull(np.asarray(points, np.float32))
    yy, xx = np.mgrid[0:height, 0:width]
    signed = np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), True)
                       for x, y in zip(xx.ravel(), yy.ravel())]).reshape(height, width)
    return signed > 0, np.abs(signed)


def test_rendered_silhouette_is_the_projected_box(alone):
    """The renderer's camera is the labels' camera: every pixel the box covers has its centre
    inside the projected cuboid, and every pixel centre inside it is covered, except pixels
    within 0.05 px of the outline (float rounding; a camera off by half a pixel fails)."""
    checked = 0
    for stem, ann in _frames(alone):
        (obj,) = ann["objects"]
        seg = cv2.imread(stem + ".seg.png", cv2.IMREAD_UNCHANGED)
        assert seg.dtype == np.uint16 and set(np.unique(seg)) <= {0, 1}
        inside, distance = _inside(obj["projected_cuboid"][:8], 200, 150)
        wrong = (seg == 1) != inside
        assert (distance[wrong] <= 0.05).all(), distance[wrong].max()
        assert inside.sum() > 50
        checked += 1
        full_in_frame = all(0 <= u < 200 and 0 <= v < 150 for u, v in obj["projected_cuboid"])
        if full_in_frame:
            assert obj["visibility"] == 1.0
    assert checked == 6


def test_depth_is_metres_along_z_and_the_texture_is_drawn(alone):
    for stem, ann in _frames(alone):
        (obj,) = ann["objects"]
        depth = cv2.imread(stem + ".depth.png", cv2.IMREAD_UNCHANGED).astype(float) / 1000
        seg = cv2.imread(stem + ".seg.png", cv2.IMREAD_UNCHANGED)
        assert (depth[seg == 0] == 0).all()
        _, cam = project(cuboid_vertices(obj["cuboid_dimensions"]), obj["quaternion_xyzw"],
                         obj["location"], _K(ann))
        assert cam[:8, 2].min() - 0.002 <= depth[seg == 1].min()
        assert depth[seg == 1].max() <= cam[:8, 2].max() + 0.002
        # The atlas's tiles, not a flat grey: the object's pixels span several hues.
        image = cv2.imread(stem + ".png")
        hue = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[:, :, 0][seg == 1]
        sat = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[:, :, 1][seg == 1]
        assert np.percentile(sat, 50) > 60
        assert np.ptp(np.percentile(hue, [10, 90])) > 15


def test_the_trainer_reads_the_frames_in_dopes_corner_order(alone):
    """data.scan (what train dope reads) checks every object against its own pose: all in
    the nvisii order, nothing reordered or refused."""
    samples, report = data.scan([alone], "box", 128, strict=True)
    assert len(samples) == 6
    assert report.orders.get("nvisii") == 6 and len(report.orders) == 1


def test_same_seed_same_bytes_any_workers_any_shards(box, tmp_path):
    common = ["--mesh", box, "--n", 5, "--width", 96, "--height", 72, "--seed", 9,
              "--instances", 2]
    assert local_cli("synth", "dope", *common, "--out", tmp_path / "one", "--workers", 1) == 0
    assert local_cli("synth", "dope", *common, "--out", tmp_path / "two", "--workers", 2) == 0
    for shard in ("0/2", "1/2"):
        assert local_cli("synth", "dope", *common, "--out", tmp_path / "shards", "--shard",
                         shard, "--workers", 1) == 0
    names = sorted(os.listdir(tmp_path / "one"))
    assert len(names) == 11 and "_synth_settings.json" in names
    for other in ("two", "shards"):
        assert sorted(os.listdir(tmp_path / other)) == names
        for name in names:
            assert (tmp_path / other / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert local_cli("synth", "dope", *common[:-2], "--out", tmp_path / "three", "--seed", 10,
                     "--workers", 1) == 0
    assert (tmp_path / "three" / "000000.png").read_bytes() != (tmp_path / "one" / "000000.png").read_bytes()


def test_a_rerun_keeps_finished_frames_and_writes_the_missing(box, tmp_path, capsys):
    common = ["synth", "dope", "--mesh", box, "--out", tmp_path, "--n", 4, "--width", 64,
              "--height", 48, "--workers", 1]
    assert local_cli(*common) == 0
    before = {p: os.path.getmtime(p) for p in glob.glob(str(tmp_path / "*"))}
    os.remove(tmp_path / "000002.json")
    capsys.readouterr()
    assert local_cli(*common) == 0
    out = capsys.readouterr().out
    assert "wrote 1 frames" in out and "kept 3 already there" in out, out
    for path, mtime in before.items():
        if "000002" not in path:
            assert os.path.getmtime(path) == mtime
    assert os.path.isfile(tmp_path / "000002.json")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]   # no temp left


def test_instances_distractors_and_occlusion(box, tmp_path):
    """Several copies, each labelled; distractors hide parts of them, and visibility is the
    share of each copy's own silhouette left visible in the frame."""
    assert local_cli("synth", "dope", "--mesh", box, "--out", tmp_path, "--n", 8, "--width", 160,
                     "--height", 120, "--instances", 3, "--max_distractors", 6, "--extras",
                     "--seed", 2, "--workers", 1) == 0
    seen_partial = False
    for stem, ann in _frames(str(tmp_path)):
        assert [o["name"] for o in ann["objects"]] == ["box_0", "box_1", "box_2"]
        seg = cv2.imread(stem + ".seg.png", cv2.IMREAD_UNCHANGED)
        for k, obj in enumerate(ann["objects"], start=1):
            inside, distance = _inside(obj["projected_cuboid"][:8], 160, 120)
            visible = int((seg == k).sum())
            assert not ((seg == k) & ~inside & (distance > 0.5)).any()  # never outside its box
            if inside.sum() > 100:
                assert abs(obj["visibility"] - visible / inside.sum()) < 0.1
            seen_partial |= 0 < obj["visibility"] < 0.9
    assert seen_partial


def test_ply_vertex_colours_in_mm_and_glb(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.box(extents=(60.0, 40.0, 20.0))   # mm, as BOP's models
    mesh.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(mesh.vertices), 1))
    mesh.export(tmp_path / "obj_000001.ply")
    assert local_cli("synth", "dope", "--mesh", tmp_path / "obj_000001.ply", "--scale", 0.001,
                     "--out", tmp_path / "ply", "--n", 2, "--width", 64, "--height", 48,
                     "--workers", 1) == 0
    (stem, ann), _ = _frames(str(tmp_path / "ply"))
    assert ann["objects"][0]["class"] == "obj_000001"
    np.testing.assert_allclose(ann["objects"][0]["cuboid_dimensions"], (0.06, 0.04, 0.02), atol=1e-6)
    mesh.apply_scale(0.001)
    mesh.export(tmp_path / "thing.glb")
    assert local_cli("synth", "dope", "--mesh", tmp_path / "thing.glb", "--object", "Thing",
                     "--out", tmp_path / "glb", "--n", 1, "--width", 64, "--height", 48,
                     "--workers", 1) == 0
    ((stem, ann),) = _frames(str(tmp_path / "glb"))
    assert ann["objects"][0]["class"] == "thing"
    np.testing.assert_allclose(sorted(ann["objects"][0]["cuboid_dimensions"]), (0.02, 0.04, 0.06),
                               atol=1e-6)


def test_canonical_labels_are_the_same_for_poses_a_symmetry_apart(tmp_path):
    """Poses R and R.S of an object symmetric under S show the same image: they get the same
    label (discrete: half a turn about z; continuous: any turn about z)."""
    info = mesh_files.models_info(tmp_path / "models_info.json", {
        1: {"symmetries_discrete": [mesh_files.rotation_z_180_mm()]},
        2: {"symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]}})
    rng = np.random.default_rng(0)
    centre = np.array([0.0, 0.0, 0.01])
    for object_id, angles in ((1, [np.pi]), (2, [0.3, 1.7, 4.0])):
        syms = symmetry.read(str(info), object_id, scale=0.001)
        assert syms
        for _ in range(20):
            q = random_quat_xyzw(rng)
            location = np.array([0.05, -0.02, 0.6])
            qa, la = symmetry.canonical(q, location, centre, syms)
            for angle in angles:
                Rz = quat_xyzw_to_matrix([0, 0, np.sin(angle / 2), np.cos(angle / 2)])
                R2 = quat_xyzw_to_matrix(q) @ Rz
                q2 = rvec_to_quat(cv2.Rodrigues(R2)[0].ravel())
                qb, lb = symmetry.canonical(q2, location, centre, syms)
                np.testing.assert_allclose(quat_xyzw_to_matrix(qa), quat_xyzw_to_matrix(qb),
                                           atol=1e-6)
                np.testing.assert_allclose(la, lb, atol=1e-9)
    assert not symmetry.read(None)


def test_symmetric_object_frames_carry_canonical_labels(box, tmp_path):
    # The box's centre is off its origin: the half turn about z carries it back (metres here).
    half_turn = mesh_files.rotation_z_180_mm()
    half_turn[3], half_turn[7] = 2 * OFFSET[0], 2 * OFFSET[1]
    info = mesh_files.models_info(tmp_path / "models_info.json",
                                  {5: {"symmetries_discrete": [half_turn]}})
    assert local_cli("synth", "dope", "--mesh", box, "--out", tmp_path / "sym", "--n", 6,
                     "--width", 64, "--height", 48, "--symmetry", info, "--scale", 1.0,
                     "--workers", 1) == 0
    for _, ann in _frames(str(tmp_path / "sym")):
        (obj,) = ann["objects"]
        R = quat_xyzw_to_matrix(obj["quaternion_xyzw"])
        flipped = R @ np.diag([-1.0, -1.0, 1.0])
        assert np.trace(R) >= np.trace(flipped) - 1e-9
        assert obj["symmetric"] is True
    # eval dope reads the mark: ADD-S by default on these frames, --add for ADD.
    weights = write_weights(tmp_path / "w", object_name="box")
    assert local_cli("eval", "dope", weights, "--data", tmp_path / "sym", "--outf",
                     tmp_path / "e") == 0
    assert json.load(open(tmp_path / "e" / "results.json"))["info"]["metric"] == "ADD-S"


@pytest.mark.parametrize("argv, words", [
    (["--mesh", "missing.obj"], "--mesh missing.obj does not exist"),
    (["--mesh", "{notmesh}"], "not a mesh file"),
    (["--mesh", "{box}", "--cuboid"], "two generators"),
    (["--instances", "2"], "--instances: applies only to --mesh"),
    (["--mesh", "{box}", "--camera", "{cam}"], "is 80x60; drop --width/--height"),
    (["--mesh", "{box}", "--symmetry_id", "3"], "needs --symmetry"),
    (["--mesh", "{nomtl}"], "which is not beside it"),
    (["--mesh", "{notex}"], "names the texture"),
    (["--mesh", "{mm}"], "is it in mm? pass --scale 0.001"),
    (["--mesh", "{box}", "--backgrounds", "{badbg}"], "fake.png: not a readable image"),
    (["--mesh", "{empty}"], "is a folder"),
    (["--mesh", "{box}", "--shard", "2/2"], "--shard takes I/N"),
    (["--mesh", "{box}", "--distractors", "{empty}"], "holds no mesh files"),
    (["--mesh", "{box}", "--backgrounds", "{empty}"], "holds no images"),
    (["--mesh", "{broken}"], "not a readable mesh"),
    (["--mesh", "{box}", "--symmetry", "{twoinfo}"], "name one with --symmetry_id"),
    (["--mesh", "{box}", "--symmetry", "{twoinfo}", "--symmetry_id", "abc"],
     "--symmetry_id abc is not an object number"),
    (["--mesh", "{box}", "--camera", "{cam}", "--fx", "100"], "drop --fx/--fy"),
    (["--mesh", "{box}", "--camera", "{notmesh}"], "not valid JSON"),
    (["--mesh", "{box}", "--camera", "{cam0}"], "cam0.yaml gives image width 0: write the size the camera was calibrated at"),
    (["--mesh", "{box}", "--camera", "{camfrac}"], "the camera's image width 96.7 is not a whole number of pixels"),
    (["--mesh", "{box}", "--symmetry", "{mirror}", "--scale", "1"],
     "symmetries_discrete[0] is not a rotation (a mirror)"),
    (["--mesh", "{box}", "--symmetry", "{shifted}", "--scale", "1"],
     "symmetries_discrete[0] does not map the mesh onto itself"),
    (["--mesh", "{box}", "--symmetry", "{noaxis}", "--scale", "1"],
     "symmetries_continuous[0] has the axis [0, 0, 0], which has no direction"),
    (["--mesh", "{flat}"], "every triangle of the mesh has zero area (a box of 20.0 x 0.0 x 0.0"),
    (["--mesh", "{badtex}"], "which is not an image OpenCV reads"),
    (["--mesh", "{micro}"], "too small to render"),
    (["--mesh", "{box}", "--scale", "1000"], "at --scale 1000: pass the --scale that makes it metres"),
    (["--mesh", "{tri}"], "is flat (its box is 10.0 x 10.0 x 0.0 cm)"),
    (["--mesh", "{box}", "--camera", "{camhuge}"], "image width 100000 is outside 32..7680"),
])
def test_bad_input_is_one_line_and_writes_nothing(box, tmp_path, capsys, argv, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notmesh.txt").write_text("hello")
    (tmp_path / "broken.obj").write_text("v 0 0 0\nf 1 2 3\nv nonsense\n")
    mesh_files.models_info(tmp_path / "two.json", {1: {}, 2: {}})
    (tmp_path / "cam.json").write_text(json.dumps({"camera_data": {"intrinsics": {
        "fx": 90, "fy": 90, "cx": 40, "cy": 30}, "width": 80, "height": 60}}))
    for name, width in (("cam0.yaml", 0), ("camhuge.yaml", 100000), ("camfrac.yaml", 96.7)):
        (tmp_path / name).write_text("image_width: %s\nimage_height: 480\ncamera_matrix: {rows: 3, "
                                     "cols: 3, data: [500, 0, 320, 0, 500, 240, 0, 0, 1]}\nprojection_matrix: "
                                     "{rows: 3, cols: 4, data: [500, 0, 320, 0, 0, 500, 240, 0, 0, 0, "
                                     "1, 0]}\n" % width)
    mesh_files.models_info(tmp_path / "mirror.json", {1: {"symmetries_discrete": [
        [-1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]]}})
    # A half turn about z through the origin: the box's centre is not on that axis.
    mesh_files.models_info(tmp_path / "shifted.json", {1: {"symmetries_discrete": [
        mesh_files.rotation_z_180_mm()]}})
    mesh_files.models_info(tmp_path / "noaxis.json", {1: {"symmetries_continuous": [
        {"axis": [0, 0, 0], "offset": [0, 0, 0]}]}})
    (tmp_path / "tri.obj").write_text("v 0 0 0\nv 0.1 0 0\nv 0 0.1 0\nf 1 2 3\n")   # area, no depth
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 0.2 0 0\nv 0.1 0 0\nf 1 2 3\n")  # a line
    badtex = mesh_files.textured_box(str(tmp_path / "badtex"))
    (tmp_path / "badtex" / "box.png").write_text("not an image")
    micro = mesh_files.textured_box(str(tmp_path / "micro"), size=(1e-6, 1e-6, 1e-6))
    nomtl = mesh_files.textured_box(str(tmp_path / "nomtl"))
    os.remove(os.path.join(tmp_path, "nomtl", "box.mtl"))
    notex = mesh_files.textured_box(str(tmp_path / "notex"))
    os.remove(os.path.join(tmp_path, "notex", "box.png"))
    mm = mesh_files.textured_box(str(tmp_path / "mm"), units=1000.0)
    (tmp_path / "badbg").mkdir()
    cv2.imwrite(str(tmp_path / "badbg" / "good.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "badbg" / "fake.png").write_text("not an image")
    names = dict(box=box, notmesh=tmp_path / "notmesh.txt", empty=tmp_path / "empty",
                 broken=tmp_path / "broken.obj", twoinfo=tmp_path / "two.json",
                 cam=tmp_path / "cam.json", cam0=tmp_path / "cam0.yaml", camfrac=tmp_path / "camfrac.yaml",
                 camhuge=tmp_path / "camhuge.yaml", flat=tmp_path / "flat.obj", badtex=badtex,
                 micro=micro, tri=tmp_path / "tri.obj", mirror=tmp_path / "mirror.json", shifted=tmp_path / "shifted.json",
                 noaxis=tmp_path / "noaxis.json", nomtl=nomtl, notex=notex, mm=mm,
                 badbg=tmp_path / "badbg")
    argv = [str(a).format(**names) for a in argv]
    code = local_cli("synth", "dope", *argv, "--out", tmp_path / "out", "--n", 1, "--width", 64,
                     "--height", 48)
    err = capsys.readouterr().err
    assert code != 0 and words in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_the_default_frame_size_given_with_a_camera_of_another_size_is_refused(box, tmp_path, capsys):
    """--width 640 --height 480 typed beside an 80x60 camera was taken for the default and
    dropped without a word; the camera's own size typed again is fine."""
    cam = tmp_path / "cam.json"
    cam.write_text(json.dumps({"camera_data": {"intrinsics": {"fx": 90, "fy": 90, "cx": 40, "cy": 30},
                                               "width": 80, "height": 60}}))
    args = ["synth", "dope", "--mesh", box, "--camera", cam, "--n", 1, "--workers", 1]
    assert local_cli(*args, "--out", tmp_path / "a", "--width", 640, "--height", 480) == 2
    assert "is 80x60; drop --width/--height" in capsys.readouterr().err
    assert local_cli(*args, "--out", tmp_path / "b", "--width", 80, "--height", 60) == 0
    assert cv2.imread(str(tmp_path / "b" / "000000.png")).shape == (60, 80, 3)


def test_renderer_reports_its_gl(tmp_path):
    ctx = render.create_context()
    try:
        assert ctx.version_code >= 330
    finally:
        ctx.release()


def test_a_ros_camera_info_sets_the_size_and_intrinsics(box, tmp_path):
    """camera_info as camera_calibration writes it: P (the rectified camera) is used, as the node
    does with input_is_rectified, and the frame takes the calibration's size."""
    (tmp_path / "camera_info.yaml").write_text(
        "image_width: 120\nimage_height: 90\n"
        "camera_matrix: {rows: 3, cols: 3, data: [100, 0, 60, 0, 101, 45, 0, 0, 1]}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [0.1, 0, 0, 0, 0]}\n"
        "projection_matrix: {rows: 3, cols: 4, data: [98, 0, 58.5, 0, 0, 99, 44.5, 0, 0, 0, 1, 0]}\n")
    assert local_cli("synth", "dope", "--mesh", box, "--camera", tmp_path / "camera_info.yaml",
                     "--out", tmp_path / "out", "--n", 1, "--workers", 1) == 0
    ((stem, ann),) = _frames(str(tmp_path / "out"))
    assert ann["camera_data"] == {"intrinsics": {"fx": 98.0, "fy": 99.0, "cx": 58.5, "cy": 44.5},
                                  "width": 120, "height": 90}
    assert cv2.imread(stem + ".png").shape == (90, 120, 3)


def test_a_rerun_with_other_settings_is_refused(box, tmp_path, capsys):
    """Resuming keeps frames; frames of another mesh, size or seed in the same folder would make
    a mixed dataset nothing could tell apart, so the folder records its settings."""
    common = ["synth", "dope", "--mesh", box, "--out", tmp_path, "--n", 2, "--width", 64,
              "--height", 48, "--workers", 1]
    assert local_cli(*common) == 0
    record = json.load(open(tmp_path / "_synth_settings.json"))
    assert record["mesh"] == "box.obj" and record["seed"] == 0 and record["width"] == 64
    for other, key in ((["--seed", 5], "seed"), (["--instances", 2], "instances"),
                       (["--object", "thing"], "object")):
        capsys.readouterr()
        assert local_cli(*common, *other) == 2
        err = capsys.readouterr().err
        assert "holds frames made with another %s" % key in err and len(err.strip().splitlines()) == 1
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".json")) == [
        "000000.json", "000001.json", "_synth_settings.json"]
    assert local_cli(*common[:-2], "--n", 3, "--workers", 1) == 0     # more frames: resumes


def test_symmetries_named_by_a_bop_mesh_name_and_workers_capped(tmp_path, capsys):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.cylinder(radius=30.0, height=80.0, sections=16)
    mesh.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(mesh.vertices), 1))
    mesh.export(tmp_path / "obj_000002.ply")
    info = mesh_files.models_info(tmp_path / "models_info.json", {
        1: {}, 2: {"symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]}})
    assert local_cli("synth", "dope", "--mesh", tmp_path / "obj_000002.ply", "--scale", 0.001,
                     "--symmetry", info, "--out", tmp_path / "out", "--n", 2, "--width", 64,
                     "--height", 48, "--workers", 100) == 0
    out = capsys.readouterr().out
    assert "symmetric: canonical labels" in out and "--workers 100: using" in out
    assert all(o["symmetric"] for _, a in _frames(str(tmp_path / "out")) for o in a["objects"])
