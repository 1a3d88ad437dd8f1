"""Dataset scan: both annotation dialects, case-insensitive classes, the bad-data report."""
import json
import os

import cv2
import numpy as np
import pytest

from pose_train.dope.data import dimensions_of, find_images, image_size, object_settings, scan
from pose_train.errors import UserError


def _image(path, w=96, h=72):
    img = np.full((h, w, 3), 127, np.uint8)
    cv2.imwrite(str(path), img)
    return path


def _nvisii(folder, stem, cls="Cube", pts=None, w=96, h=72):
    pts = pts if pts is not None else [[10 + 5 * i, 20 + 3 * i] for i in range(9)]
    _image(folder / (stem + ".png"), w, h)
    ann = {"camera_data": {"intrinsics": {"fx": 80.0, "fy": 80.0, "cx": 48.0, "cy": 36.0}},
           "objects": [{"class": cls, "visibility": 1.0, "projected_cuboid": pts,
                        "location": [0.0, 0.0, 0.5], "quaternion_xyzw": [0, 0, 0, 1]}]}
    (folder / (stem + ".json")).write_text(json.dumps(ann))


def _ndds_scene(folder):
    """A FAT-style scene: .left.jpg + json, depth/seg renders, side files one level up."""
    scene = folder / "kitchen_0"
    scene.mkdir(parents=True)
    (folder / "_camera_settings.json").write_text(json.dumps({"camera_settings": [{
        "name": "left", "intrinsic_settings": {"fx": 768.2, "fy": 768.2, "cx": 480, "cy": 270,
                                               "resX": 960, "resY": 540}}]}))
    (folder / "_object_settings.json").write_text(json.dumps({
        "exported_object_classes": ["003_cracker_box_16k"],
        "exported_objects": [{"class": "003_cracker_box_16k",
                              "cuboid_dimensions": [16.4, 21.3, 7.2]}]}))
    _image(scene / "000000.left.jpg")
    _image(scene / "000000.left.depth.png")
    _image(scene / "000000.left.seg.png")
    corners = [[20 + i, 30 + i] for i in range(8)]
    (scene / "000000.left.json").write_text(json.dumps({
        "camera_data": {"location_worldframe": [0, 0, 0]},
        "objects": [{"class": "003_cracker_box_16k", "visibility": 0.8,
                     "location": [1.0, 2.0, 50.0], "quaternion_xyzw": [0, 0, 0, 1],
                     "projected_cuboid": corners, "projected_cuboid_centroid": [40.5, 41.5]}]}))
    return scene


def test_nvisii_and_ndds_in_one_scan(tmp_path):
    _nvisii(tmp_path, "a")
    _ndds_scene(tmp_path / "fat")
    samples, report = scan([str(tmp_path)], "003_CRACKER_BOX_16K", imagesize=64)
    ndds = [s for s in samples if s.dialect == "ndds"]
    assert len(ndds) == 1 and len(samples) == 2        # depth/seg renders are not samples
    s = ndds[0]
    assert s.points.shape == (1, 9, 2)
    np.testing.assert_allclose(s.points[0, 8], [40.5, 41.5])       # centroid appended last
    assert s.intrinsics == {"fx": 768.2, "fy": 768.2, "cx": 480.0, "cy": 270.0}
    np.testing.assert_allclose(s.locations_m[0], [0.01, 0.02, 0.5])  # cm -> m
    assert object_settings(str(tmp_path / "fat"))["003_cracker_box_16k"] == pytest.approx(
        [0.164, 0.213, 0.072])
    # The node's dimensions come from here (FAT: _object_settings.json, in cm on disk).
    assert dimensions_of(samples) == pytest.approx([0.164, 0.213, 0.072])
    assert s.size == (96, 72)
    # The NViSII image has no cracker box: kept as a negative, and the report says so.
    assert any("a.png" in line and "object (classes here:" in line for line in report.lines)


def test_object_matching_ignores_case_and_lists_classes(tmp_path):
    _nvisii(tmp_path, "a", cls="Bieropener")
    samples, _ = scan([str(tmp_path)], "bieropener", imagesize=64)
    assert len(samples[0].points) == 1
    with pytest.raises(UserError, match=r"classes found: Bieropener \(1\)"):
        scan([str(tmp_path)], "bicycle", imagesize=64)


def test_bad_data_is_reported_one_line_each(tmp_path):
    _nvisii(tmp_path, "good")
    _nvisii(tmp_path, "outside", pts=[[-5, 10]] + [[10, 10]] * 8)
    _nvisii(tmp_path, "small", w=40, h=30, pts=[[5, 5]] * 9)
    _image(tmp_path / "orphan.png")
    _image(tmp_path / "broken.png")
    (tmp_path / "broken.json").write_text("{not json")
    _nvisii(tmp_path, "cut")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    samples, report = scan([str(tmp_path)], "cube", imagesize=64)
    assert sorted(os.path.basename(s.image) for s in samples) == ["good.png", "outside.png",
                                                                    "small.png"]
    reasons = {k: 1 for k in ("without json", "malformed json", "truncated image",
                              "keypoints outside", "smaller than crop")}
    assert report.counts == reasons
    text = "\n".join(report.lines)
    for name in ("orphan.png", "broken.json", "cut.png", "outside.png", "small.png"):
        assert name in text
    written = report.write(str(tmp_path / "out" / "data_report.txt"), len(samples))
    last = open(written).read().splitlines()[-1]
    assert last.startswith("data report: 3 images used;")
    with pytest.raises(UserError, match="--strict: 5 data problems"):
        scan([str(tmp_path)], "cube", imagesize=64, strict=True)


def test_header_reader_and_missing_folder(tmp_path):
    _image(tmp_path / "x.jpg", 50, 40)
    assert image_size(str(tmp_path / "x.jpg")) == (50, 40, True)
    assert find_images([str(tmp_path)]) == [str(tmp_path / "x.jpg")]
    with pytest.raises(UserError, match="does not exist"):
        find_images([str(tmp_path / "nope")])


def test_trailing_metadata_is_not_truncation(tmp_path):
    _image(tmp_path / "tail.jpg", 40, 30)
    with open(tmp_path / "tail.jpg", "ab") as f:
        f.write(b"METADATA" * 100)                       # appended after the EOI marker
    assert image_size(str(tmp_path / "tail.jpg")) == (40, 30, True)
    data = (tmp_path / "tail.jpg").read_bytes()
    cut = data[:data.index(b"\xff\xd9")]
    (tmp_path / "cut.jpg").write_bytes(cut)
    assert image_size(str(tmp_path / "cut.jpg"))[2] is False


def _damage_idat(path):
    """Flip a byte of the IDAT chunk's CRC: header and IEND intact, libpng's "IDAT: CRC error"."""
    import struct
    data = bytearray(open(path, "rb").read())
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", bytes(data[start:start + 4]))[0]
    data[start + 8 + length] ^= 0xFF
    open(path, "wb").write(bytes(data))


def test_png_damaged_inside_is_reported_skipped_and_fatal_under_strict(tmp_path, capfd):
    _nvisii(tmp_path, "good")
    _nvisii(tmp_path, "crc")
    _damage_idat(tmp_path / "crc.png")
    # Headers and trailer pass; only decoding fails, where the loader used to put a blank
    # frame in its place and libpng's message names no file.
    assert image_size(str(tmp_path / "crc.png"))[2] is True
    assert cv2.imread(str(tmp_path / "crc.png")) is None
    samples, report = scan([str(tmp_path)], "cube", imagesize=64)
    assert [os.path.basename(s.image) for s in samples] == ["good.png"]
    assert report.counts == {"damaged image": 1}
    assert "crc.png" in report.lines[0] and "IDAT" in report.lines[0] and "CRC" in report.lines[0]
    with pytest.raises(UserError, match="--strict: 1 data problems.*crc.png"):
        scan([str(tmp_path)], "cube", imagesize=64, strict=True)


def test_infer_refuses_a_damaged_png_by_name(tmp_path):
    from pose_train_py27.dope_io import InputError, list_inputs, read_frames
    _nvisii(tmp_path, "crc")
    _damage_idat(tmp_path / "crc.png")
    with pytest.raises(InputError, match="crc.png: damaged PNG .*IDAT.*CRC"):
        list(read_frames(list_inputs([str(tmp_path / "crc.png")])))


def test_a_symlink_loop_counts_each_frame_once(tmp_path):
    """A link back to an ancestor once made one frame into 41 (train, validate and infer)."""
    from pose_train_py27.dope_io import list_inputs
    _nvisii(tmp_path, "000000")
    (tmp_path / "sub").mkdir()
    os.symlink("..", str(tmp_path / "sub" / "loop"))
    os.symlink(str(tmp_path / "000000.png"), str(tmp_path / "sub" / "again.png"))
    assert find_images([str(tmp_path)]) == [str(tmp_path / "000000.png")]
    assert list_inputs([str(tmp_path)]) == [(str(tmp_path / "000000.png"), False)]
    samples, _ = scan([str(tmp_path)], "cube", imagesize=32)
    assert len(samples) == 1


def test_two_images_sharing_one_annotation_are_refused_by_name(tmp_path):
    _nvisii(tmp_path, "000000")
    _image(tmp_path / "000000.jpg")
    with pytest.raises(UserError, match=r"000000\.jpg and 000000\.png share one annotation, 000000\.json"):
        scan([str(tmp_path)], "cube", imagesize=32, strict=True)


def test_a_dangling_link_is_named_with_the_fix(tmp_path):
    from pose_train_py27.dope_io import InputError, list_inputs
    _nvisii(tmp_path, "000000")
    os.symlink(str(tmp_path / "gone.png"), str(tmp_path / "000001.png"))
    with pytest.raises(InputError, match="000001.png: a link to .*gone.png, which does not exist; remove"):
        find_images([str(tmp_path)])
    with pytest.raises(InputError, match="which does not exist"):
        list_inputs([str(tmp_path)])


def test_nan_cuboid_dimensions_are_reported_and_kept_out_of_the_sidecar(tmp_path):
    _nvisii(tmp_path, "000000")
    _nvisii(tmp_path, "000001")
    ann = json.loads((tmp_path / "000001.json").read_text())
    ann["objects"][0]["cuboid_dimensions"] = [float("nan"), 8.0, 6.0]
    (tmp_path / "000001.json").write_text(json.dumps(ann))
    ann = json.loads((tmp_path / "000000.json").read_text())
    ann["objects"][0]["cuboid_dimensions"] = [10.0, 8.0, 6.0]
    (tmp_path / "000000.json").write_text(json.dumps(ann))
    samples, report = scan([str(tmp_path)], "cube", imagesize=32)
    assert len(samples) == 2 and len(samples[1].points) == 1          # its keypoints still train
    assert any("000001.png" in line and "cuboid_dimensions is not 3 finite numbers" in line
               for line in report.lines)
    assert dimensions_of(samples) == [10.0, 8.0, 6.0]


def test_json_outputs_are_strict(tmp_path):
    """NaN and Infinity are not JSON: a writer refuses them and leaves no file."""
    from pose_train.files import atomic_write_json
    with pytest.raises(ValueError):
        atomic_write_json(str(tmp_path / "x.json"), {"x": float("nan")})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("change,says", [
    (lambda obj: obj.update(projected_cuboid=[[float("nan"), 1.0]] * 9), "projected_cuboid has non-finite values"),
    (lambda obj: obj.update(visibility=0.0), "every one has visibility 0")])
def test_a_class_present_but_unusable_is_named_with_the_reason(tmp_path, change, says):
    """It said 'no annotation of class cube ... classes found: cube (2)' before."""
    for stem in ("000000", "000001"):
        _nvisii(tmp_path, stem)
        ann = json.loads((tmp_path / (stem + ".json")).read_text())
        change(ann["objects"][0])
        (tmp_path / (stem + ".json")).write_text(json.dumps(ann))
    with pytest.raises(UserError, match="2 'cube' objects in .*, none usable: .*%s" % says):
        scan([str(tmp_path)], "cube", imagesize=32)


def claim_size(path, w, h):
    """Rewrite a PNG's IHDR to claim w x h (CRC fixed): what a header-only reader sees."""
    import struct
    import zlib
    data = bytearray(open(str(path), "rb").read())
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    open(str(path), "wb").write(bytes(data))


def test_an_image_over_the_pixel_cap_is_reported_before_decoding(tmp_path):
    """A PNG claiming 60000x60000 raised OpenCV's traceback; 20000x20000 took 5.2 GB."""
    _nvisii(tmp_path, "good")
    _nvisii(tmp_path, "huge")
    claim_size(tmp_path / "huge.png", 60000, 60000)
    assert image_size(str(tmp_path / "huge.png"))[:2] == (60000, 60000)
    samples, report = scan([str(tmp_path)], "cube", imagesize=64)
    assert [os.path.basename(s.image) for s in samples] == ["good.png"]
    assert report.counts == {"too large": 1}
    assert "huge.png" in report.lines[0] and "--max_pixels" in report.lines[0]
    claim_size(tmp_path / "huge.png", 96, 73)   # 7008 px: over a cap of 7000
    assert scan([str(tmp_path)], "cube", imagesize=64, max_pixels=7000)[1].counts == {"too large": 1}


def test_unusable_data_is_refused_with_its_report_written(tmp_path, capsys):
    """Every object NaN: the one line named a class problem, and no report said which files."""
    from pose_train.cli import main
    data = tmp_path / "data"
    data.mkdir()
    for stem in ("a", "b"):
        _nvisii(data, stem, pts=[[float("nan"), 1.0]] * 9)
    with pytest.raises(SystemExit) as code:
        main(["--local", "train", "dope", "--data", str(data), "--outf", str(tmp_path / "out")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    report = tmp_path / "out" / "data_report.txt"
    assert code.value.code == 2 and "none usable" in last and str(report) in last
    text = report.read_text()
    assert "a.png" in text and "b.png" in text and "non-finite" in text


def test_a_frame_whose_object_is_fully_occluded_is_reported_as_such(tmp_path):
    """It said "no visible 'cube' object (classes here: cube)", which reads as a contradiction."""
    import json
    from pose_train.dope.synth import write_dataset
    write_dataset(str(tmp_path), n=2, seed=2, width=64, height=48, progress=False)
    path = tmp_path / "000001.json"
    ann = json.loads(path.read_text())
    for obj in ann["objects"]:
        obj["visibility"] = 0.0
    path.write_text(json.dumps(ann))
    samples, report = scan([str(tmp_path)], "cube", 32)
    line = [l for l in report.lines if "000001.png" in l][0]
    assert "'cube' objects are fully occluded (visibility 0)" in line and "classes here" not in line


def test_frame_json_with_a_byte_order_mark_is_read(tmp_path):
    """Windows tools write UTF-8 with a BOM; every frame was "malformed" and the one line said
    no annotation of the class was found."""
    from pose_train.dope.synth import write_dataset
    write_dataset(str(tmp_path), n=2, seed=2, width=64, height=48, progress=False)
    for name in os.listdir(tmp_path):
        if name.endswith(".json") and not name.startswith("_"):
            path = tmp_path / name
            path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    samples, report = scan([str(tmp_path)], "cube", imagesize=32)
    assert len(samples) == 2
