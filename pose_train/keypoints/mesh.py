"""Object meshes: PLY in and out (plyfile), projection, ray casting and a small z-buffer rasterizer.

LINEMOD models are PLY files in millimetres with per-vertex colours (binary in BOP,
ASCII in the SIXD release). Everything here is numpy: the ray caster answers depth
questions for a handful of pixels exactly (occlusion tests, SIFT back-projection),
the rasterizer draws whole images and is only fast enough for the small meshes the
synthetic generator makes.
"""
import numpy as np
import plyfile

from pose_train.errors import UserError

def read_ply(path, faces=True):
    """Return dict(vertices (N,3) float64, faces (M,3) int64, colors (N,3) uint8 or None).

    ``faces=False`` also takes vertex-only files (kp6d ships its keypoints so); faces is then
    an empty (0, 3) array when the file has none."""
    try:
        ply = plyfile.PlyData.read(path)
    except (plyfile.PlyParseError, plyfile.PlyHeaderParseError, ValueError, EOFError) as err:
        raise UserError("%s is not a PLY file plyfile can read (%s); pass the object's .ply "
                        "model" % (path, str(err).splitlines()[0] if str(err) else type(err).__name__))
    except OSError as err:
        raise UserError("%s: cannot read it (%s)" % (path, err.strerror or err))
    names = [e.name for e in ply.elements]
    if "vertex" not in names or (faces and "face" not in names):
        raise UserError("%s: PLY needs vertex%s elements, has %s"
                        % (path, " and face" if faces else "", names))
    vert = ply["vertex"].data
    vertices = np.stack([vert["x"], vert["y"], vert["z"]], 1).astype(np.float64)
    tris = _triangles(ply["face"].data, path) if "face" in names else np.zeros((0, 3), np.int64)
    colors = None
    if all(k in vert.dtype.names for k in ("red", "green", "blue")):
        colors = np.stack([vert["red"], vert["green"], vert["blue"]], 1).astype(np.uint8)
    return {"vertices": vertices, "faces": tris, "colors": colors}


def read_vertices(path):
    """(N, 3) vertices of a PLY (faces optional) or Wavefront OBJ model, in the file's units."""
    if not path.lower().endswith(".obj"):
        return read_ply(path, faces=False)["vertices"]
    try:
        with open(path) as f:
            rows = [line.split()[1:4] for line in f if line.startswith("v ")]
        vertices = np.array(rows, dtype=np.float64)
    except OSError as err:
        raise UserError("%s: cannot read it (%s)" % (path, err.strerror or err))
    except ValueError:
        raise UserError("%s: its 'v x y z' lines are not numbers; pass a valid OBJ or PLY" % path)
    if vertices.ndim != 2 or len(vertices) < 4:
        raise UserError("%s: an OBJ needs at least 4 'v x y z' vertex lines" % path)
    return vertices


def _triangles(face_data, path):
    field = "vertex_indices" if "vertex_indices" in face_data.dtype.names else "vertex_index"
    if field not in face_data.dtype.names:
        raise UserError("%s: PLY faces have no vertex_indices list" % path)
    lists = face_data[field]
    if len(lists) and not all(len(v) == 3 for v in lists):
        raise UserError("%s: only triangle meshes are supported; triangulate the model" % path)
    return np.array([list(v) for v in lists], dtype=np.int64).reshape(-1, 3)


def write_ply(path, vertices, faces=None, colors=None, binary=True):
    """Write x,y,z (+ red,green,blue) and triangle faces; faces=None writes a point cloud
    (vertex element only, as kp6d's keypoint files)."""
    vertices = np.asarray(vertices, dtype=np.float32)
    cloud = faces is None
    faces = np.zeros((0, 3), np.int32) if cloud else np.asarray(faces, dtype=np.int32)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rows = np.zeros(len(vertices), dtype=fields)
    for i, axis in enumerate("xyz"):
        rows[axis] = vertices[:, i]
    if colors is not None:
        for i, ch in enumerate(("red", "green", "blue")):
            rows[ch] = np.asarray(colors)[:, i]
    tris = np.zeros(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    tris["vertex_indices"] = faces
    elements = [plyfile.PlyElement.describe(rows, "vertex")]
    if not cloud:
        elements.append(plyfile.PlyElement.describe(tris, "face",
                                                    len_types={"vertex_indices": "u1"}))
    plyfile.PlyData(elements, text=not binary, byte_order="<").write(path)


def diameter(vertices, max_points=4000):
    """Largest vertex-to-vertex distance (BOP's definition), on a subsample for big meshes."""
    pts = np.asarray(vertices, dtype=np.float64)
    if len(pts) > max_points:
        pts = pts[np.linspace(0, len(pts) - 1, max_points).astype(int)]
    best = 0.0
    for start in range(0, len(pts), 512):
        d = np.linalg.norm(pts[start:start + 512, None] - pts[None], axis=2)
        best = max(best, float(d.max()))
    return best


def transform(points, R, t):
    return np.asarray(points, np.float64) @ np.asarray(R).T + np.asarray(t).reshape(1, 3)


def project(points, K, R, t):
    """Model points (N,3) -> pixel coordinates (N,2) and camera depth (N,)."""
    cam = transform(points, R, t)
    z = cam[:, 2]
    uv = cam @ np.asarray(K, np.float64).T
    return uv[:, :2] / np.maximum(uv[:, 2:3], 1e-9), z


def raycast(dirs, tris, chunk=None):
    """Distance along each ray from the camera centre to the nearest triangle (inf if none).

    dirs: (P,3) ray directions in the camera frame; tris: (F,3,3) triangles in the camera
    frame. Moller-Trumbore, vectorised over rays x triangles in chunks.
    """
    # Rays per chunk: keeps each (rays x faces x 3) temporary near 50 MB for big meshes.
    chunk = chunk or max(1, int(2e6 // max(len(tris), 1)))
    v0, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    qvec = np.cross(-v0, e1)                                 # ray-independent with origin 0
    tq = np.einsum("fk,fk->f", qvec, e2)
    out = np.full(len(dirs), np.inf)
    for s in range(0, len(dirs), chunk):
        d = dirs[s:s + chunk, None, :]                       # (p,1,3)
        pvec = np.cross(d, e2[None])                         # (p,F,3)
        det = np.einsum("pfk,fk->pf", pvec, e1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = np.einsum("pfk,fk->pf", pvec, -v0) * inv        # origin is the camera centre
        v = np.einsum("pk,fk->pf", d[:, 0], qvec) * inv
        t = tq[None] * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
        out[s:s + chunk] = np.where(hit, t, np.inf).min(axis=1)
    return out


def depth_at_pixels(uv, K, R, t, mesh):
    """Rendered depth (camera z, mm) of the mesh at pixel positions uv (N,2); inf = background."""
    rays = np.concatenate([np.asarray(uv, np.float64), np.ones((len(uv), 1))], 1)
    rays = rays @ np.linalg.inv(np.asarray(K, np.float64)).T   # z component is 1
    tris = transform(mesh["vertices"], R, t)[mesh["faces"]]
    return raycast(rays, tris)                                 # ray z = 1, so distance = depth


def self_visible(points, K, R, t, mesh, tol):
    """True where a model point is the first surface its camera ray meets (within tol mm)."""
    uv, z = project(points, K, R, t)
    return depth_at_pixels(uv, K, R, t, mesh) >= z - tol


def rasterize(mesh, K, R, t, width, height, shade=None):
    """Z-buffer render: (rgb float (H,W,3) in 0..255, depth (H,W) with 0 for background).

    Colours are interpolated perspective-correctly from vertex colours; shade (M,) scales
    each face (simple Lambert lighting). One Python iteration per triangle: small meshes only.
    """
    cam = transform(mesh["vertices"], R, t)
    uv, z = project(mesh["vertices"], K, R, t)
    colors = (mesh["colors"] if mesh["colors"] is not None
              else np.full((len(cam), 3), 200, np.uint8)).astype(np.float64)
    depth = np.full((height, width), np.inf)
    rgb = np.zeros((height, width, 3))
    for fi, tri in enumerate(mesh["faces"]):
        if np.any(z[tri] <= 1e-6):
            continue
        p = uv[tri]
        x0, y0 = np.maximum(np.floor(p.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(p.max(0)).astype(int), [width - 1, height - 1])
        if x0 > x1 or y0 > y1:
            continue
        area = (p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[2, 0] - p[0, 0]) * (p[1, 1] - p[0, 1])
        if abs(area) < 1e-12:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
        w = np.stack([(p[(i + 1) % 3, 0] - gx) * (p[(i + 2) % 3, 1] - gy)
                      - (p[(i + 2) % 3, 0] - gx) * (p[(i + 1) % 3, 1] - gy) for i in range(3)]) / area
        inside = np.all(w >= 0, axis=0)
        if not inside.any():
            continue
        invz = np.tensordot(1.0 / z[tri], w, 1)           # 1/z is linear in screen space
        zz = 1.0 / invz
        win = inside & (zz < depth[y0:y1 + 1, x0:x1 + 1])
        depth[y0:y1 + 1, x0:x1 + 1][win] = zz[win]
        col = np.tensordot((colors[tri] / z[tri, None]).T, w, 1) * zz   # (3,h,w)
        if shade is not None:
            col = col * shade[fi]
        rgb[y0:y1 + 1, x0:x1 + 1][win] = col.transpose(1, 2, 0)[win]
    depth[np.isinf(depth)] = 0.0
    return rgb, depth
