"""Choosing the 3D keypoints on the object (`--kptype`), all in model coordinates (mm).

sift     kp6d ran PCL's 3D SIFT on the mesh. Without PCL we do what the keypoints are
         for: find 2D SIFT points on training images, lift each onto the model surface
         with the ground-truth pose and a ray cast against the mesh (which is the depth
         test: a point behind the surface is never reached), then keep the points that
         were detected in the most training frames, at least a minimum distance apart.
fps      farthest point sampling over points sampled uniformly on the surface.
cluster  k-means of the vertices; each centre snapped to its nearest vertex.
corner   the 8 corners of the model's bounding box + its centre (kpnum must be 9).
random   seeded uniform samples on the surface.
"""
import cv2
import numpy as np
from tqdm import tqdm

from pose_train.errors import UserError
from pose_train.keypoints import mesh as meshlib

KPTYPES = ("sift", "fps", "cluster", "corner", "random")
ON_SURFACE = {"sift": True, "fps": True, "cluster": True, "corner": False, "random": True}


def sample_surface(model, n, rng):
    """n points uniform over the mesh area (barycentric sampling of area-weighted faces)."""
    tri = model["vertices"][model["faces"]]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(tri), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    return np.einsum("nk,nkd->nd", w, tri[face])


def farthest_points(points, k, start=None):
    """Greedy farthest point sampling; starts at the point farthest from the centroid."""
    if start is None:
        start = int(np.argmax(np.linalg.norm(points - points.mean(0), axis=1)))
    chosen = [start]
    dist = np.linalg.norm(points - points[start], axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return points[chosen]


def kmeans(points, k, rng, iters=40):
    """k centres of ``points`` (cv2.kmeans, k-means++ seeding), reproducible from ``rng``."""
    cv2.setRNGSeed(int(rng.integers(2 ** 31 - 1)))   # cv2 draws from its own generator
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, iters, 1e-9)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(points, np.float32), k, None, criteria, 1,
                               cv2.KMEANS_PP_CENTERS)
    return centres.astype(np.float64)


def box_corners(vertices):
    """8 bounding-box corners (x, y, z sign order -,-,- ... +,+,+) and the box centre last."""
    lo, hi = vertices.min(0), vertices.max(0)
    corners = [[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    return np.array(corners + [(lo + hi) / 2.0])


def _lift_sift(frame, model, sift, max_per_frame):
    """SIFT points of one frame lifted to model coordinates: (points (n,3), responses (n,))."""
    img = cv2.imread(frame.rgb, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise UserError("cannot read image %s" % frame.rgb)
    mask = np.zeros_like(img)
    if frame.mask_visib is not None:
        mask = (cv2.imread(frame.mask_visib, cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8) * 255
    elif frame.bbox is not None:
        x, y, w, h = [int(round(v)) for v in frame.bbox]
        mask[max(y, 0):y + h, max(x, 0):x + w] = 255
    else:
        mask[:] = 255
    kps = sorted(sift.detect(img, mask), key=lambda kp: -kp.response)[:max_per_frame]
    if not kps:
        return np.zeros((0, 3)), np.zeros(0)
    uv = np.array([kp.pt for kp in kps], np.float64)
    depth = meshlib.depth_at_pixels(uv, frame.K, frame.R, frame.t, model)
    ok = np.isfinite(depth)  # points off the object (background inside the box) have no depth
    rays = np.concatenate([uv, np.ones((len(uv), 1))], 1) @ np.linalg.inv(frame.K).T
    cam = rays[ok] * depth[ok, None]
    return (cam - frame.t) @ frame.R, np.array([kp.response for kp in kps])[ok]


def _repeatability(points, frame_of, n_frames, radius, rng, max_candidates=3000):
    """For candidate points: in how many distinct frames was a SIFT point within radius."""
    cand = np.arange(len(points))
    if len(cand) > max_candidates:
        cand = np.sort(rng.choice(cand, max_candidates, replace=False))
    onehot = np.zeros((len(points), n_frames), np.float32)
    onehot[np.arange(len(points)), frame_of] = 1.0
    score = np.zeros(len(cand))
    for s in range(0, len(cand), 256):
        d = np.linalg.norm(points[cand[s:s + 256], None] - points[None], axis=2)
        score[s:s + 256] = ((d < radius).astype(np.float32) @ onehot > 0).sum(1)
    return cand, score


def _spread_select(points, score, k, min_dist):
    """Best-scored points first, skipping any closer than min_dist to one already kept."""
    order = np.argsort(-score, kind="stable")
    while min_dist > 1e-6:
        kept = []
        for i in order:
            if all(np.linalg.norm(points[i] - points[j]) >= min_dist for j in kept):
                kept.append(i)
                if len(kept) == k:
                    return points[kept]
        min_dist /= 2.0  # not enough well-separated points: accept closer ones
    raise UserError("SIFT found only %d distinct surface points; lower --kpnum or use --kptype fps"
                    % len(order))


def sift_keypoints(seq, frames, k, rng, max_frames=60, max_per_frame=300):
    sift = cv2.SIFT_create()
    picks = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
    pts, resp, frame_of = [], [], []
    for n, i in enumerate(tqdm(np.unique(picks), desc="sift", unit="frame", leave=False)):
        p, r = _lift_sift(frames[i], seq.model, sift, max_per_frame)
        pts.append(p)
        resp.append(r)
        frame_of.append(np.full(len(p), n))
    points = np.concatenate(pts)
    if len(points) < k:
        raise UserError("SIFT found %d points on object %d's surface, fewer than --kpnum %d; "
                        "use --kptype fps" % (len(points), seq.seq, k))
    resp, frame_of = np.concatenate(resp), np.concatenate(frame_of)
    cand, score = _repeatability(points, frame_of, len(picks), 0.02 * seq.diameter, rng)
    # Ties in repeatability go to the stronger response (scaled far below one frame).
    score = score + 0.5 * resp[cand] / (resp[cand].max() + 1e-12)
    return _spread_select(points[cand], score, k, 0.1 * seq.diameter)


def read_given(path):
    """(k, 3) keypoints from a file, in its order: a PLY (vertex-only as kp6d ships them in
    kps/N/TYPE/obj_XX.ply, or with faces), text with one x y z per line, or JSON
    ([[x, y, z], ...] or {"keypoints": [...]}). Model units (LINEMOD: mm)."""
    import json
    from pose_train.keypoints.mesh import read_ply
    lower = path.lower()
    try:
        if lower.endswith(".ply"):
            pts = read_ply(path, faces=False)["vertices"]
        elif lower.endswith(".json"):
            with open(path) as f:
                data = json.load(f)
            pts = np.asarray(data["keypoints"] if isinstance(data, dict) else data, np.float64)
        else:
            pts = np.loadtxt(path, dtype=np.float64, ndmin=2, delimiter=None)
    except OSError as err:
        raise UserError("%s: cannot read it (%s)" % (path, err.strerror or err))
    except (ValueError, KeyError, TypeError) as err:
        raise UserError("%s: not a list of 3D keypoints (%s); give x y z per line, a JSON list "
                        "or a PLY" % (path, str(err).splitlines()[0] if str(err) else "bad value"))
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 4:
        raise UserError("%s: needs at least 4 keypoints of 3 coordinates, got shape %s"
                        % (path, tuple(pts.shape)))
    return pts


def designate(kptype, k, seq, frames, seed=0):
    """(k,3) keypoints in model coordinates for sequence ``seq``, from ``frames`` (training)."""
    rng = np.random.default_rng(seed)
    model = seq.model
    if kptype == "corner":
        if k != 9:
            raise UserError("--kptype corner gives 9 keypoints (8 box corners + centre); pass --kpnum 9")
        return box_corners(model["vertices"])
    if kptype == "fps":
        return farthest_points(sample_surface(model, 20000, rng), k)
    if kptype == "cluster":
        verts = np.unique(model["vertices"], axis=0)
        if len(verts) < k:
            raise UserError("the model has %d distinct vertices, fewer than --kpnum %d" % (len(verts), k))
        centres = kmeans(verts, k, rng)
        nearest = np.argmin(((centres[:, None] - verts[None]) ** 2).sum(2), axis=1)
        return verts[nearest]
    if kptype == "random":
        return sample_surface(model, k, rng)
    if kptype == "sift":
        return sift_keypoints(seq, frames, k, rng)
    raise UserError("--kptype must be one of %s, got %r" % ("|".join(KPTYPES), kptype))
