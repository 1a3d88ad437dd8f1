"""A headless rasteriser for `synth dope --mesh`: OpenGL 3.3 through EGL (moderngl).

On a machine without a GPU, EGL is Mesa's (llvmpipe, software); on an NVIDIA GPU with the
container toolkit's graphics capability, it is the driver's. Nothing needs a display.

The camera is OpenCV's pinhole (x right, y down, z forward) with pixel centres at integers, so
a vertex lands exactly where ``geometry.project`` puts it. One pass writes the shaded colour,
the instance id and the depth (metres along z) of every pixel.
"""
import numpy as np

from pose_train.errors import UserError

NEAR, FAR = 0.01, 100.0
MAX_LIGHTS = 4
# Corners sharper than this keep their face's normal (a box stays a box); softer ones are
# smoothed across faces (a bottle stays round).
CREASE_DEG = 40.0

_VERTEX = """
#version 330
uniform mat4 model_view;
uniform vec4 intr;      // ndc x = intr.x * X / Z + intr.y, ndc y = intr.z * Y / Z + intr.w
uniform vec2 depth_ab;  // clip z = depth_ab.x * Z + depth_ab.y
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in vec4 in_color;
out vec3 v_pos;
out vec3 v_normal;
out vec2 v_uv;
out vec4 v_color;
void main() {
    vec4 p = model_view * vec4(in_pos, 1.0);
    v_pos = p.xyz;
    v_normal = mat3(model_view) * in_normal;
    v_uv = in_uv;
    v_color = in_color;
    gl_Position = vec4(intr.x * p.x + intr.y * p.z, intr.z * p.y + intr.w * p.z,
                       depth_ab.x * p.z + depth_ab.y, p.z);
}
"""

_FRAGMENT = """
#version 330
uniform sampler2D tex;
uniform float object_id;
uniform int n_lights;
uniform vec3 light_dir[4];     // the direction light travels, camera frame
uniform vec3 light_color[4];
uniform vec3 ambient;
uniform float specular;
uniform float shininess;
in vec3 v_pos;
in vec3 v_normal;
in vec2 v_uv;
in vec4 v_color;
layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_id;
layout(location = 2) out float f_depth;
void main() {
    vec4 base = texture(tex, v_uv) * v_color;
    vec3 n = normalize(v_normal);
    vec3 view = normalize(-v_pos);
    if (dot(n, view) < 0.0) n = -n;   // two-sided: open meshes and scans show their inside
    vec3 c = ambient * base.rgb;
    for (int i = 0; i < n_lights; ++i) {
        vec3 l = -light_dir[i];
        float diffuse = max(dot(n, l), 0.0);
        float spec = diffuse > 0.0 ? pow(max(dot(n, normalize(l + view)), 0.0), shininess) : 0.0;
        c += light_color[i] * (base.rgb * diffuse + specular * spec);
    }
    f_color = vec4(clamp(c, 0.0, 1.0), 1.0);
    f_id = object_id;
    f_depth = v_pos.z;
}
"""


def _moderngl():
    try:
        import moderngl
    except ImportError:
        raise UserError("synth dope --mesh needs moderngl (pip install 'pose-train[train]'), "
                        "or run it in the modern image: pose-train synth dope --mesh ...")
    return moderngl


def create_context():
    """A headless OpenGL 3.3 context through EGL; one line naming the fix when there is none."""
    moderngl = _moderngl()
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as exc:   # glcontext raises plain Exceptions for every EGL failure
        raise UserError("no headless OpenGL (EGL) here (%s); install Mesa's EGL (Debian/Ubuntu: "
                        "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri) or run it in the "
                        "modern image, which has it; to draw on the CPU where a GPU driver's EGL "
                        "fails, set __EGL_VENDOR_LIBRARY_FILENAMES=%s"
                        % (str(exc).strip(), "/usr/share/glvnd/egl_vendor.d/50_mesa.json"))


def vertex_table(vertices, faces, normals, uv, colors):
    """Per-corner rows (position, normal, uv, rgba) of every triangle, float32, for one VBO."""
    corners = np.asarray(faces).reshape(-1)
    rows = np.empty((len(corners), 12), np.float32)
    rows[:, 0:3] = np.asarray(vertices)[corners]
    rows[:, 3:6] = normals
    rows[:, 6:8] = np.zeros((len(corners), 2)) if uv is None else np.asarray(uv)[corners]
    rows[:, 8:12] = colors
    return rows


def corner_normals(vertices, faces, vertex_normals=None):
    """Each triangle corner's normal: the vertex's where it is within CREASE_DEG of the face's,
    else the face's (per-corner, len(faces) * 3 x 3)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    face_n /= np.maximum(np.linalg.norm(face_n, axis=1, keepdims=True), 1e-12)
    face_n = np.repeat(face_n, 3, axis=0)
    if vertex_normals is None:
        return face_n
    vn = np.asarray(vertex_normals, np.float64)[np.asarray(faces).reshape(-1)]
    smooth = (vn * face_n).sum(axis=1) >= np.cos(np.radians(CREASE_DEG))
    return np.where(smooth[:, None], vn, face_n)


class Renderer:
    """Draws posed meshes into one width x height frame. ``add_mesh`` uploads a mesh once;
    ``render`` draws any of them, each at its 4x4 pose, and reads the frame back."""

    def __init__(self, width, height, K):
        self.ctx = create_context()
        self.width, self.height = int(width), int(height)
        moderngl = _moderngl()
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.color = self.ctx.texture((self.width, self.height), 4, dtype="f1")
        size = (self.width, self.height)
        self.ids = self.ctx.texture(size, 1, dtype="f4")
        self.z = self.ctx.texture(size, 1, dtype="f4")
        self.fbo = self.ctx.framebuffer([self.color, self.ids, self.z],
                                        self.ctx.depth_renderbuffer(size))
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        # GL window x of pixel u is u + 0.5: OpenCV's integer pixel centres.
        self.prog["intr"].value = (2 * fx / self.width, 2 * (cx + 0.5) / self.width - 1,
                                   2 * fy / self.height, 2 * (cy + 0.5) / self.height - 1)
        self.prog["depth_ab"].value = ((FAR + NEAR) / (FAR - NEAR), -2 * FAR * NEAR / (FAR - NEAR))
        self.meshes = []
        self.ctx.enable(moderngl.DEPTH_TEST)
        self._white = self.ctx.texture((1, 1), 4, data=b"\xff\xff\xff\xff")

    def add_mesh(self, rows, texture=None):
        """Upload a vertex_table and its texture (HxWx3/4 uint8, row 0 the image's top, as
        trimesh gives it with v measured from the bottom). Returns the mesh's handle."""
        vbo = self.ctx.buffer(np.ascontiguousarray(rows, np.float32).tobytes())
        vao = self.ctx.vertex_array(self.prog, [(vbo, "3f 3f 2f 4f", "in_pos", "in_normal",
                                                 "in_uv", "in_color")])
        tex = self._white
        if texture is not None:
            image = np.ascontiguousarray(np.flipud(texture))
            tex = self.ctx.texture((image.shape[1], image.shape[0]), image.shape[2], image.tobytes())
            tex.build_mipmaps()
            tex.repeat_x = tex.repeat_y = True
        self.meshes.append((vao, tex))
        return len(self.meshes) - 1

    def _lights(self, lights, ambient, specular, shininess):
        lights = list(lights)[:MAX_LIGHTS]
        dirs = [tuple(float(v) for v in d) for d, _ in lights] + [(0.0, 0.0, 1.0)] * MAX_LIGHTS
        cols = [tuple(float(v) for v in c) for _, c in lights] + [(0.0, 0.0, 0.0)] * MAX_LIGHTS
        self.prog["n_lights"].value = len(lights)
        self.prog["light_dir"].value = dirs[:MAX_LIGHTS]
        self.prog["light_color"].value = cols[:MAX_LIGHTS]
        self.prog["ambient"].value = tuple(float(v) for v in ambient)
        self.prog["specular"].value = float(specular)
        self.prog["shininess"].value = float(shininess)

    def _draw(self, items):
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        for handle, pose, object_id in items:
            vao, tex = self.meshes[handle]
            tex.use(0)
            self.prog["model_view"].write(np.asarray(pose, np.float32).T.tobytes())
            self.prog["object_id"].value = float(object_id)
            vao.render()

    def _read(self, attachment, components, dtype):
        raw = self.fbo.read(components=components, attachment=attachment, dtype=dtype)
        shape = (self.height, self.width) + ((components,) if components > 1 else ())
        return np.frombuffer(raw, np.uint8 if dtype == "f1" else np.float32).reshape(shape)

    def render(self, items, lights=(), ambient=(1.0, 1.0, 1.0), specular=0.0, shininess=16.0,
               depth=False):
        """Draw ``items`` [(mesh handle, 4x4 object-to-camera pose, id > 0)].

        Returns (rgb HxWx3 uint8, ids HxW int32 with 0 for nothing, depth HxW float32 metres
        with 0 for nothing, or None unless asked); row 0 is the image's top."""
        self._lights(lights, ambient, specular, shininess)
        self._draw(items)
        rgb = self._read(0, 4, "f1")[:, :, :3]
        ids = np.rint(self._read(1, 1, "f4")).astype(np.int32)
        return rgb, ids, self._read(2, 1, "f4").copy() if depth else None

    def silhouettes(self, items):
        """Each item's pixel count drawn alone (the denominator of its visibility)."""
        counts = []
        for item in items:
            self._draw([item])
            counts.append(int((self._read(1, 1, "f4") == item[2]).sum()))
        return counts

    def release(self):
        self.ctx.release()
