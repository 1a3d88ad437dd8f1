#!/usr/bin/env python3
"""The content manifest of a built image: the sha256 of every file under the given folders.

  manifest.py write ROOT...   write MANIFEST.sha256 beside this script and print its digest
  manifest.py digest          print the digest of the MANIFEST.sha256 already written

One line per file, sorted by path: "<sha256>  <path>"; a symlink is "link:<target>  <path>".
Two builds from the same commit and lock must give the same manifest (tests/test_docker_images.py);
its digest is the image's io.pose-train.manifest.sha256 label.
"""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "MANIFEST.sha256")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lines(roots):
    out = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                path = os.path.join(dirpath, name)
                if path == MANIFEST:
                    continue
                value = "link:" + os.readlink(path) if os.path.islink(path) else _sha256(path)
                out.append("%s  %s" % (value, path))
    return sorted(out, key=lambda line: line.split("  ", 1)[1])


def main(argv):
    if argv[:1] == ["write"] and len(argv) > 1:
        text = "\n".join(lines(argv[1:])) + "\n"
        with open(MANIFEST + ".tmp", "w") as f:
            f.write(text)
        os.replace(MANIFEST + ".tmp", MANIFEST)
    elif argv != ["digest"]:
        sys.exit(__doc__)
    print(_sha256(MANIFEST))


if __name__ == "__main__":
    main(sys.argv[1:])
