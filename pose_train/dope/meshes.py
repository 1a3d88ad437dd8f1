"""Meshes for `synth dope --mesh`, read with trimesh: OBJ + MTL + texture, PLY with vertex
colours (LINEMOD/BOP models), glTF/GLB. Each becomes the renderer's vertex table, its texture,
and its axis-aligned box in its own frame (DOPE's cuboid)."""
import os
from dataclasses import dataclass, field

import numpy as np

from pose_train.dope import render
from pose_train.errors import UserError

MESH_EXTS = (".obj", ".ply", ".glb", ".gltf", ".stl", ".off")
GREY = (0.7, 0.7, 0.7, 1.0)


@dataclass
class MeshData:
    rows: np.ndarray          # render.vertex_table, metres
    texture: object           # HxWxC uint8 or None
    box_min: np.ndarray       # the axis-aligned box in the mesh's frame, metres
    box_max: np.ndarray
    triangles: int
    path: str = ""
    plain: bool = False       # no texture and no colours: drawn grey
    files: list = field(default_factory=list)   # what the mesh file loads besides itself

    @property
    def dimensions(self):
        return self.box_max - self.box_min

    @property
    def centre(self):
        return (self.box_max + self.box_min) / 2.0


def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise UserError("synth dope --mesh needs trimesh (pip install 'pose-train[train]'), or "
                        "run it in the modern image")
    return trimesh


def _texture_and_uv(visual):
    """(texture image or None, uv or None, base colour rgba 0-1) of a TextureVisuals."""
    material = getattr(visual, "material", None)
    if material is not None and hasattr(material, "baseColorTexture"):   # glTF's PBR material
        image, factor = material.baseColorTexture, material.baseColorFactor
    else:
        image = getattr(material, "image", None)
        factor = getattr(material, "diffuse", None)
    color = (np.asarray(factor, np.float64) / (255.0 if np.asarray(factor).max() > 1 else 1.0)
             if factor is not None else np.ones(4))
    if image is None or visual.uv is None:
        return None, None, color
    texture = np.asarray(image.convert("RGBA") if hasattr(image, "convert") else image, np.uint8)
    return texture, np.asarray(visual.uv, np.float64), color


def _colors(mesh, n_corners):
    """Per-corner rgba (0-1), the texture image and the uv, from whatever the file carries."""
    visual, faces = mesh.visual, mesh.faces
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        texture, uv, color = _texture_and_uv(visual)
        return np.tile(np.resize(color, 4), (n_corners, 1)), texture, uv
    if kind == "vertex":
        return np.asarray(visual.vertex_colors, np.float64)[faces.reshape(-1)] / 255.0, None, None
    if kind == "face":
        return np.repeat(np.asarray(visual.face_colors, np.float64) / 255.0, 3, axis=0), None, None
    return np.tile(GREY, (n_corners, 1)), None, None


def from_trimesh(mesh, path=""):
    """A loaded trimesh.Trimesh (already in metres) -> MeshData."""
    if len(mesh.faces) == 0:
        raise UserError("%s: the mesh has no triangles; export it with its faces" % path)
    vertices = np.asarray(mesh.vertices, np.float64)
    if not np.isfinite(vertices).all():
        raise UserError("%s: the mesh has vertices that are not finite numbers; repair it "
                        "(e.g. in Blender) and export it again" % path)
    span = float(np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0)))
    if not float(mesh.area) > 1e-9 * span ** 2:
        raise UserError("%s: every triangle of the mesh has zero area (a box of %s cm): nothing "
                        "would be drawn; export the object's surface" % (
                            path or "the mesh", " x ".join("%.1f" % (100 * v) for v in
                                                          vertices.max(axis=0) - vertices.min(axis=0))))
    n_corners = len(mesh.faces) * 3
    colors, texture, uv = _colors(mesh, n_corners)
    normals = render.corner_normals(vertices, mesh.faces, mesh.vertex_normals)
    rows = render.vertex_table(vertices, mesh.faces, normals, uv, colors)
    plain = texture is None and getattr(mesh.visual, "kind", None) not in ("vertex", "face")
    return MeshData(rows, texture, vertices.min(axis=0), vertices.max(axis=0), len(mesh.faces),
                    path, plain)


def load(path, scale=1.0):
    """Read a mesh file, scaled to metres by ``scale``. Scenes are flattened with their node
    transforms; materials with several textures are packed into one by trimesh."""
    trimesh = _trimesh()
    if not os.path.isfile(path):
        raise UserError("--mesh %s %s; pass an OBJ (with its MTL and texture beside it), PLY or "
                        "glTF/GLB file" % (path, "is a folder" if os.path.isdir(path) else
                                           "does not exist"))
    if not path.lower().endswith(MESH_EXTS):
        raise UserError("--mesh %s: not a mesh file pose-train reads (%s)"
                        % (path, ", ".join(MESH_EXTS)))
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:   # trimesh raises many types for a broken file
        raise UserError("%s: not a readable mesh (%s: %s); check that it opens in a viewer"
                        % (path, type(exc).__name__, exc))
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise UserError("%s: holds no triangles; export the object as a triangle mesh" % path)
    linked = linked_files(path)    # an OBJ's MTL and textures checked here, once
    if scale != 1.0:
        mesh.apply_scale(scale)
    data = from_trimesh(mesh, path)
    data.files = linked
    return data


# MTL texture options and how many values each takes at most (numbers, or one word).
_MAP_OPTIONS = {"-blendu": 1, "-blendv": 1, "-boost": 1, "-mm": 2, "-o": 3, "-s": 3, "-t": 3,
                "-texres": 1, "-clamp": 1, "-bm": 1, "-imfchan": 1, "-type": 1, "-cc": 1}


def _is_number(word):
    try:
        float(word)
    except ValueError:
        return False
    return True


def _map_name(words):
    """The file of a map_* statement: what follows its options, spaces included (Blender
    writes 'map_Kd my label.png')."""
    i = 0
    while i < len(words) and words[i] in _MAP_OPTIONS:
        most, i = _MAP_OPTIONS[words[i]], i + 1
        taken = 0
        while i < len(words) - 1 and taken < most and (taken == 0 or _is_number(words[i])):
            i, taken = i + 1, taken + 1
    return " ".join(words[i:])


def _named_files(path, keyword):
    """The files ``path`` names on its ``keyword`` lines (mtllib in an OBJ, map_* in an MTL)."""
    named = []
    with open(path, errors="replace") as f:
        for line in f:
            words = line.split()
            if len(words) > 1 and words[0] == keyword:
                named.append(_map_name(words[1:]) if keyword.startswith("map_") else words[-1])
    return [os.path.join(os.path.dirname(path), name) for name in named if name]


def _check_obj_files(path):
    """An OBJ whose MTL or texture is missing or unreadable loads as a grey, untextured
    object; refused. Returns the files it loads besides itself."""
    import cv2
    loaded = []
    for mtl in _named_files(path, "mtllib"):
        if not os.path.isfile(mtl):
            raise UserError("%s names its materials in %s, which is not beside it; copy the .mtl "
                            "and the textures it names next to the .obj" % (path, os.path.basename(mtl)))
        loaded.append(mtl)
        _refuse_map_options(mtl)
        for texture in _named_files(mtl, "map_Kd"):
            if not os.path.isfile(texture):
                raise UserError("%s names the texture %s, which is not there; copy it next to the "
                                ".mtl (or fix the map_Kd line)" % (mtl, os.path.basename(texture)))
            if cv2.imread(texture, cv2.IMREAD_UNCHANGED) is None:
                raise UserError("%s names the texture %s, which is not an image OpenCV reads; "
                                "export it again as PNG or JPEG" % (mtl, texture))
            loaded.append(texture)
    return loaded


def _refuse_map_options(mtl):
    """trimesh loads no image for a map_Kd line with options (-s, -o, ...): the object would
    be drawn grey with a warning that blames the mesh. Refused, naming the line."""
    with open(mtl, errors="replace") as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            if len(words) > 2 and words[0] == "map_Kd" and words[1] in _MAP_OPTIONS:
                raise UserError("%s line %d: map_Kd with options (%s) is read without its "
                                "texture; write it as `map_Kd %s`" % (
                                    mtl, number, words[1], _map_name(words[1:])))


def linked_files(path):
    """The files a mesh file loads besides itself (an OBJ's MTL and textures, a glTF's buffers
    and images), so that a changed texture is a changed mesh."""
    if path.lower().endswith(".obj"):
        return _check_obj_files(path)
    if path.lower().endswith(".gltf"):
        import json
        with open(path, errors="replace") as f:
            doc = json.load(f)
        uris = [item.get("uri") for key in ("buffers", "images") for item in doc.get(key, [])]
        return [os.path.join(os.path.dirname(path), u) for u in uris
                if u and not u.startswith("data:")]
    return []


def mesh_files(folder, flag):
    """Every mesh file under ``folder`` (sorted), or one line naming the folder."""
    if not os.path.isdir(folder):
        raise UserError("%s %s is not a folder; pass a folder of mesh files" % (flag, folder))
    found = sorted(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
                   if n.lower().endswith(MESH_EXTS))
    if not found:
        raise UserError("%s %s holds no mesh files (%s)" % (flag, folder, ", ".join(MESH_EXTS)))
    return found


def primitives(rng, count, size):
    """``count`` random shapes of about ``size`` metres, each with its own flat colour: the
    distractors when no --distractors folder is given."""
    trimesh = _trimesh()
    out = []
    for _ in range(count):
        kind = int(rng.integers(0, 5))
        s = float(size) * rng.uniform(0.5, 1.2)
        if kind == 0:
            mesh = trimesh.creation.box(extents=rng.uniform(0.3, 1.0, 3) * s)
        elif kind == 1:
            mesh = trimesh.creation.cylinder(radius=s * rng.uniform(0.15, 0.5), height=s, sections=24)
        elif kind == 2:
            mesh = trimesh.creation.icosphere(subdivisions=2, radius=s / 2)
        elif kind == 3:
            mesh = trimesh.creation.cone(radius=s * rng.uniform(0.2, 0.5), height=s, sections=24)
        else:
            mesh = trimesh.creation.capsule(height=s * 0.6, radius=s * rng.uniform(0.1, 0.3))
        rgba = np.append(rng.integers(20, 256, 3), 255).astype(np.uint8)
        mesh.visual.face_colors = np.tile(rgba, (len(mesh.faces), 1))
        out.append(from_trimesh(mesh, "primitive"))
    return out
