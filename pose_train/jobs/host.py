"""Commands that run in the launcher itself: image builds and the environment report."""
from pose_train.jobs.spec import HOST, Field, Job

BUILD = Job("images-build", HOST, "pose_train.launcher.docker_images:build_job",
            "Build a runtime image.\n\nFrom its hash-locked requirements; offline once the "
            "wheelhouse is filled.",
            fields=(
                Field("name", "str", "modern", "image", choices=("modern", "legacy"),
                      positional=True),
                Field("base", "str", None, "base image with the lock's Python (default: "
                      "nvidia/cuda:13.0.1-base-ubuntu24.04 for cuda, python:3.11-slim-bookworm for "
                      "cpu); e.g. a mirror's copy"),
                Field("variant", "str", None, "modern image: CUDA or CPU-only torch",
                      choices=("cuda", "cpu")),
                Field("wheelhouse", "path", None, "folder of the locked wheels"),
                Field("tag", "str", None, "image tag (default pose-train/NAME:VERSION)"),
                Field("no_cache", "bool", False, "rebuild every layer, the dependency image too"),
            ), uses_gpu=False)

LIST = Job("images-list", HOST, "pose_train.launcher.docker_images:list_job",
           "List pose-train images with their runtime labels.", uses_gpu=False)

DOCTOR = Job("doctor", HOST, "pose_train.launcher.doctor:main",
             "Check GPU, Docker and images, each problem with its fix.\n\nGPU through NVML, "
             "the Docker engine step by step, containers a killed launcher left running, and "
             "the runtime images' labels.",
             fields=(Field("stop_orphans", "bool", False, "stop and remove the containers a "
                           "killed launcher left running"),),
             uses_gpu=False)

FETCH = Job("fetch-weights", HOST, "pose_train.pretrained:fetch_job",
            "Download torchvision's ImageNet trunks into torch's hub cache, once.\n\nVGG-19 "
            "(DOPE) and ResNet-50/101 (the keypoint localizer), hash-checked; training reads "
            "them from the cache ($TORCH_HOME, mounted into the containers), never downloads.",
            fields=(Field("name", "str", [], "which (default: all three)", many=True,
                          choices=("vgg19", "resnet50", "resnet101")),),
            uses_gpu=False, words=("fetch-weights",))

JOBS = (BUILD, LIST, DOCTOR, FETCH)
