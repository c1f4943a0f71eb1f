"""Apptainer command lines: a command run in the ilgnet-caffe image converted to a .sif file (`make apptainer-image`),
the sibling of ilgnet.bvlc.tools' Docker command lines for clusters that offer Apptainer and no Docker engine.

The image is the Dockerfile's: /opt/ilgnet-caffe holds the package and its venv (on PATH), /opt/caffe-cache Caffe.
Folders are bound at their own absolute paths (`--bind DIR`), so that the absolute paths in generated prototxt
files, solver states and campaign records mean the same inside and out; `--nv` gives a GPU task the host's NVIDIA
driver. What the binds may not cover is tools/docker-caffe.sh's list of the image's own folders.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ilgnet.errors import BadInput, MissingFile

# The image's own folders (the same list as tools/docker-caffe.sh's image_folders): a bind at one of them, above it
# (/, /opt) or inside it (/usr/lib) would hide the image's system, venv or Caffe.
IMAGE_FOLDERS = ("/bin", "/dev", "/etc", "/lib", "/lib64", "/opt/caffe-cache", "/opt/ilgnet-caffe", "/proc", "/sbin",
                 "/sys", "/usr", "/var/lib")
IMAGE_SUFFIX = ".sif"


def overlap(folder: Path) -> str | None:
    """The image folder that binding `folder` (absolute) would hide or sit inside, else None; "/" for the root."""
    if folder == Path("/"):
        return "/"
    for own in IMAGE_FOLDERS:
        if f"{own}/".startswith(f"{folder}/") or f"{folder}/".startswith(f"{own}/"):
            return own
    return None


def check_image(image: Path, binds: list[Path], *, need_binary: bool = True) -> list[Path]:
    """Checks, before anything is submitted, that `image` is a .sif file and every folder of `binds` exists and can
    be bound at its own path; returns the binds resolved, sorted and without repeats. With `need_binary`, also that
    `apptainer` is on PATH. MissingFile (no image, no folder, no apptainer) or BadInput (not a .sif, a bind over the
    image's own folders), in one line; those about the image and its binds are about "apptainer"."""
    check_image_file(image)
    resolved = []
    for folder in binds:
        path = Path(folder).resolve()
        if not path.is_dir():
            raise MissingFile(f"{folder} is to be bound in the image but is not a folder", about="apptainer")
        if (own := overlap(path)) is not None:
            raise BadInput(f"{path} cannot be bound in the image: it overlaps the image's {own}; keep data, models "
                           f"and runs in folders of your own (e.g. under /home or /scratch)", about="apptainer")
        resolved.append(path)
    if need_binary and shutil.which("apptainer") is None:
        raise MissingFile("no `apptainer` command here to run the image; submit from a node of a cluster that has "
                          "Apptainer (`module load apptainer` on many sites)")
    return sorted(set(resolved))


def check_image_file(image: Path) -> None:
    """BadInput or MissingFile (about "apptainer") unless `image` is an existing .sif file."""
    image = Path(image)
    if image.suffix != IMAGE_SUFFIX:
        raise BadInput(f"{image}: expected an Apptainer image file ending in {IMAGE_SUFFIX} (`make apptainer-image` "
                       f"builds ilgnet-caffe.sif)", about="apptainer")
    if not image.is_file():
        raise MissingFile(f"{image}: no such image file (`make apptainer-image` builds it)", about="apptainer")


def apptainer_command(image: Path, command: list, *, gpu: bool, binds: list[Path]) -> list[str]:
    """`apptainer exec [--nv] --bind DIR,... IMAGE COMMAND...`: `command` run in `image`, with the host's NVIDIA
    driver when `gpu`, and `binds` (absolute folders) at their own paths."""
    line = ["apptainer", "exec"] + (["--nv"] if gpu else [])
    if binds:
        line += ["--bind", ",".join(str(b) for b in binds)]
    return line + [str(Path(image).resolve()), *[str(part) for part in command]]
