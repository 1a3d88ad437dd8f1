"""Fields more than one job declares, so their spelling and help are written once."""
from pose_train.jobs.spec import IN, OUT, Field

SEED = Field("seed", "int", 0, "random seed (same seed, same result)")
OUTF = Field("outf", "path", "output", "output folder (created if missing)", role=OUT)
SEQ = Field("seq", "seq", 1, "LINEMOD object id, 1 or 01")
KPTYPE = Field("kptype", "str", "sift", "keypoint type", choices=("sift", "fps", "cluster", "corner",
                                                                    "random"))
KP_DATA = Field("data", "path", "data", "prepared keypoint folder (prepare keypoints' --outf)",
                role=IN)
GPUS = Field("gpus", "int", None, "GPUs to use (0 = CPU); default every visible GPU", low=0)
TIME_LIMIT = Field("time_limit", "float", None, "hours; save and exit 0 before this much "
                   "wall-clock time has passed (Kaggle: 8.5)", positive=True)
COMPILE = Field("compile", "bool", False, "torch.compile the network")
TRUST = Field("trust", "str", [], "also allow this global (train.TrainConfig) or module (train) "
              "in the pickle; what it names may run as the file loads", many=True)
NET_KIND = Field("model", "str", "auto", "network in the file", choices=("auto", "dope", "keypoints"))
# Several machines (pose_train.training.nodes): every node runs the same train command.
NODES = (
    Field("nnodes", "int", None, "machines taking part (default 1; torchrun's c10d rendezvous; "
          "env NNODES)", low=1),
    Field("node_rank", "int", None, "this machine's number, 0 first (default 0): node 0 hosts "
          "the rendezvous and its first process writes (env NODE_RANK)", low=0, resumes=False),
    Field("rdzv", "str", None, "HOST:PORT of node 0's rendezvous, as every node reaches it "
          "(env RDZV)"),
    Field("nproc_per_node", "int", None, "processes on this machine (default: --gpus, else one "
          "per visible GPU, else 1); the same on every node", low=1),
    Field("rdzv_timeout", "float", 300.0, "seconds to wait for every node to join before "
          "failing", positive=True),
)
