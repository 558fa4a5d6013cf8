"""Where the ImageNet-to-Sketch domains sit on disk (Piggyback's PyTorch layout), without importing torch.

Layout (``ROOT`` is the folder that holds the domain folders)::

    ROOT/<domain>/train/<class>/<image>      one subfolder per class (torchvision ImageFolder convention)
    ROOT/<domain>/test/<class>/<image>

Domain folder names are matched case-insensitively against ``SKETCH_DOMAINS`` (``CUBS_Cropped`` is
``cubs_cropped``); a folder counts as a domain when it holds both ``train/`` and ``test/``. ``imagenet`` is
optional. Classes are the sorted subfolder names of ``train/``; images are the files below a class folder
(searched recursively, as ImageFolder does) whose extension is in ``IMG_EXTENSIONS``; anything else
(``README.txt``) is ignored. Unlike ImageFolder, hidden entries (``.ipynb_checkpoints``, ``.DS_Store``) are
skipped, so a stray hidden folder does not become an empty class.

Kept apart from ``bap.data.sketch`` so that asking which domains exist (``available_domains``, a sweep's
validation) does not import torch.
"""

from __future__ import annotations

import os
from pathlib import Path

SKETCH_DOMAINS: tuple[str, ...] = (
    "imagenet",
    "cubs_cropped",
    "stanford_cars_cropped",
    "flowers",
    "wikiart",
    "sketches",
)
SKETCH_SPLIT_DIRS: tuple[str, ...] = ("train", "test")
# torchvision.datasets.folder.IMG_EXTENSIONS, copied so that listing files needs no torchvision import.
IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def candidate_folders(root: str | Path) -> dict[str, list[Path]]:
    """Every subfolder of ``root`` whose name matches a domain case-insensitively, complete or not.

    Returns:
        ``{domain: [folders]}`` in the canonical order of ``SKETCH_DOMAINS``; more than one folder per domain
        means the names differ only in case. Empty if ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        return {}
    found: dict[str, list[Path]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and entry.name.lower() in SKETCH_DOMAINS:
            found.setdefault(entry.name.lower(), []).append(Path(entry.path))
    return {d: found[d] for d in SKETCH_DOMAINS if d in found}


def missing_split_dirs(folder: Path) -> list[str]:
    """The names in ``SKETCH_SPLIT_DIRS`` that are not subfolders of ``folder``."""
    return [s for s in SKETCH_SPLIT_DIRS if not (folder / s).is_dir()]


def find_domain_folders(root: str | Path) -> dict[str, Path]:
    """The domain folders under ``root`` that hold ``train/`` and ``test/``, keyed by canonical domain name.

    Returns:
        ``{domain: folder}`` in the canonical order of ``SKETCH_DOMAINS``; empty if ``root`` is not a folder.

    Raises:
        ValueError: if two complete folders match one domain (names that differ only in case).
    """
    out: dict[str, Path] = {}
    for domain, folders in candidate_folders(root).items():
        complete = [f for f in folders if not missing_split_dirs(f)]
        if len(complete) > 1:
            raise ValueError(
                f"domain {domain!r} is ambiguous under {Path(root).expanduser()}: "
                f"{', '.join(f.name for f in complete)} all match (folder names are matched case-insensitively)"
            )
        if complete:
            out[domain] = complete[0]
    return out


def sketch_domains_on_disk(root: str | Path) -> list[str]:
    """Canonical names of the domains present under ``root`` (see :func:`find_domain_folders`)."""
    return list(find_domain_folders(root))


def is_sketch_root(root: str | Path) -> bool:
    """True if ``root`` holds at least one domain folder with ``train/`` and ``test/``."""
    try:
        return bool(find_domain_folders(root))
    except ValueError:  # ambiguous names: it is a sketch root, and loading it reports the ambiguity
        return True


def list_classes(split_dir: Path) -> list[str]:
    """Sorted names of the (non-hidden) class subfolders of ``split_dir``."""
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not _is_hidden(e.name))


def is_image_file(name: str) -> bool:
    """True if ``name`` has one of ``IMG_EXTENSIONS`` (case-insensitive) and is not hidden."""
    return not _is_hidden(name) and name.lower().endswith(IMG_EXTENSIONS)


def list_images(class_dir: Path) -> list[tuple[str, int, int]]:
    """The image files below ``class_dir``, recursively and following links, as ImageFolder finds them.

    Returns:
        ``(path relative to class_dir in POSIX form, size in bytes, mtime_ns)`` per image, sorted by path.
    """
    out: list[tuple[str, int, int]] = []
    pending = [(class_dir, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if _is_hidden(entry.name):
                    continue
                if entry.is_dir():
                    pending.append((Path(entry.path), f"{prefix}{entry.name}/"))
                elif is_image_file(entry.name) and entry.is_file():
                    stat = entry.stat()
                    out.append((f"{prefix}{entry.name}", stat.st_size, stat.st_mtime_ns))
    out.sort()
    return out
