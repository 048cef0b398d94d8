"""Getting the dataset: download it from Kaggle with kagglehub, or unpack a local zip
(or take a local folder), then find the root that holds Training/ and Testing/.

Every way ends in the same check, `core.data.dataset.scan_dataset`, so what this module
reports as ready is exactly what training and the app can read.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.data.dataset import LAYOUT_HELP, scan_dataset
from core.errors import DatasetError

KAGGLE_HANDLE = "masoudnickparvar/brain-tumor-mri-dataset"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_HANDLE}"
# The real dataset is 7,023 files and 159 MB unpacked: these bounds leave it ample room
# and refuse a zip bomb before a byte is written.
MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 2_000_000_000
# How deep below the download or the unpacked archive the Training/ folder may sit.
SEARCH_DEPTH = 3
LAYOUT_TREE = """\
<root>/
├── Training/
│   ├── glioma/        Tr-glTr_0000.jpg ...
│   ├── meningioma/
│   ├── notumor/
│   └── pituitary/
└── Testing/
    ├── glioma/        Te-glTr_0000.jpg ...
    ├── meningioma/
    ├── notumor/
    └── pituitary/"""
OTHER_WAYS = (
    f"Other ways: download the zip from {KAGGLE_URL} on a machine that can, then unpack it here "
    "with `python -m core fetch-data --archive FILE` (or give its folder); or unpack it by hand "
    f"so that {LAYOUT_HELP.removeprefix('expected ')}."
)

Report = Callable[[str], None]


@dataclass(frozen=True)
class Fetched:
    """A dataset ready to use: its root, its size, and how it got there."""

    root: Path
    training: int
    testing: int
    size: int  # bytes of the images
    how: str

    def describe(self) -> str:
        return (
            f"dataset ready at {self.root} ({self.how}): {self.training:,} Training and "
            f"{self.testing:,} Testing images, {self.size / 1e6:,.0f} MB"
        )


def find_root(folder: Path, depth: int = SEARCH_DEPTH) -> Path:
    """The first folder at or below `folder` (breadth first, at most `depth` levels down)
    that holds both Training/ and Testing/; raises DatasetError when there is none."""
    level = [Path(folder)]
    for _ in range(depth + 1):
        for candidate in level:
            if (candidate / "Training").is_dir() and (candidate / "Testing").is_dir():
                return candidate
        level = [
            child
            for parent in level
            for child in sorted(parent.iterdir())
            if child.is_dir() and not child.is_symlink() and not _is_hidden(child.name)
        ]
    raise DatasetError(f"no folder with Training/ and Testing/ in {folder} ({LAYOUT_HELP})")


def ready(folder: Path, how: str) -> Fetched:
    """The dataset found in `folder`, checked as training reads it."""
    root = find_root(folder)
    index = scan_dataset(root)
    size = sum(s.path.stat().st_size for s in index.training + index.testing)
    return Fetched(index.root, len(index.training), len(index.testing), size, how)


def existing(target: Path) -> Fetched | None:
    """The dataset already in `target`; None when `target` is missing or empty. Raises
    DatasetError when it holds something else, so nothing is written over it."""
    if not target.exists():
        return None
    if not target.is_dir():
        raise DatasetError(f"{target} is a file; give a folder to put the dataset in")
    if not any(target.iterdir()):
        return None
    try:
        return ready(target, "already there, nothing fetched")
    except DatasetError as exc:
        raise DatasetError(
            f"{target} is not empty and holds no usable dataset ({exc}); give a new folder"
        ) from None


_SIGN_IN = (
    "Sign in: create an API token at https://www.kaggle.com/settings/api and set KAGGLE_API_TOKEN "
    "(or KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json in ~/.kaggle/)."
)


def _refused(status: int | None) -> str:
    if status in (401, 403):
        return f"Kaggle refused the download (HTTP {status}). {_SIGN_IN} {OTHER_WAYS}"
    return f"Kaggle answered HTTP {status} to the download. {OTHER_WAYS}"


def download(target: Path, report: Report = print) -> Fetched:
    """Download the Kaggle dataset into `target` with kagglehub; raises DatasetError with
    what happened and the other ways when Kaggle cannot be reached or refuses."""
    target = Path(target).expanduser().absolute()
    if found := existing(target):
        return found
    report(f"downloading {KAGGLE_HANDLE} from Kaggle to {target} (about 150 MB)")
    import kagglehub  # imported here: it pulls in requests and kagglesdk
    import requests

    # kagglehub draws its own tqdm progress bar on stderr and offers no progress hook, so
    # callers can only say where it goes before and what arrived after.
    try:
        path = kagglehub.dataset_download(KAGGLE_HANDLE, output_dir=str(target))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise DatasetError(
            f"Kaggle cannot be reached from this machine: no network, or a firewall or proxy "
            f"blocks it ({type(exc).__name__}). {OTHER_WAYS}"
        ) from None
    except requests.HTTPError as exc:
        raise DatasetError(_refused(exc.response.status_code if exc.response is not None else None)) from None
    except (kagglehub.exceptions.UnauthenticatedError, kagglehub.exceptions.CredentialError) as exc:
        raise DatasetError(f"Kaggle refused the download: {exc}. {_SIGN_IN} {OTHER_WAYS}") from None
    except OSError as exc:
        raise DatasetError(f"cannot write the download to {target}: {exc.strerror or exc}") from None
    return ready(Path(path), "downloaded from Kaggle")


def from_local(source: Path, target: Path, report: Report = print) -> Fetched:
    """A local zip unpacked into `target`, or a local folder used where it is."""
    source = Path(source).expanduser().absolute()
    if source.is_dir():
        return ready(source, "used in place")
    if not source.is_file():
        raise DatasetError(f"{source} does not exist")
    target = Path(target).expanduser().absolute()
    if found := existing(target):
        return found
    report(f"unpacking {source} to {target}")
    unpack_zip(source, target)
    return ready(target, f"unpacked from {source.name}")


def unpack_zip(archive: Path, target: Path) -> None:
    """Unpack a zipped dataset into `target` (new or empty). Every entry is checked first:
    no absolute path, no `..`, no link, at most MAX_MEMBERS files and MAX_UNPACKED_BYTES in
    all. It is unpacked into a hidden sibling folder, its layout checked, and only then
    renamed: a failure leaves neither a half nor a wrong dataset behind."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _checked_members(zf)
            total = sum(m.file_size for m, _ in members)
            free = shutil.disk_usage(_existing_parent(target)).free
            if total > free:
                raise DatasetError(
                    f"the zip unpacks to {total / 1e6:,.0f} MB; {target} has {free / 1e6:,.0f} MB free"
                )
            staging = target.parent / f".{target.name}.unpacking"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                for member, relative in members:
                    _extract(zf, member, staging / relative)
                scan_dataset(find_root(staging))
                if target.exists():
                    target.rmdir()  # existing() let only an empty folder through
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive.name} is not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"cannot unpack {archive.name} into {target}: {exc.strerror or exc}") from None


def _checked_members(zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The entries to unpack with their safe relative paths; raises DatasetError for a
    hostile or oversized archive."""
    members = []
    for info in zf.infolist():
        # Zips made on Windows can separate folders with backslashes.
        name = PurePosixPath(info.filename.replace("\\", "/"))
        if _leaves_folder(name):
            raise DatasetError(f"the zip entry {info.filename!r} points outside the target folder: refused")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"the zip entry {info.filename!r} is a link: refused")
        if info.is_dir() or any(_is_hidden(part) for part in name.parts):
            continue
        members.append((info, name))
    if len(members) > MAX_MEMBERS:
        raise DatasetError(f"the zip holds {len(members):,} files; the limit is {MAX_MEMBERS:,}")
    total = sum(m.file_size for m, _ in members)
    if total > MAX_UNPACKED_BYTES:
        raise DatasetError(
            f"the zip unpacks to {total / 1e6:,.0f} MB; the limit is {MAX_UNPACKED_BYTES / 1e6:,.0f} MB"
        )
    return members


def _leaves_folder(name: PurePosixPath) -> bool:
    """An absolute path, a `..`, or a Windows drive (`C:`): unpacked, it would land elsewhere."""
    return name.is_absolute() or ".." in name.parts or (bool(name.parts) and ":" in name.parts[0])


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> None:
    """One entry written to `path`, refused if it inflates past its declared size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(member) as source, open(path, "xb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > member.file_size:
                raise DatasetError(f"the zip entry {member.filename!r} is larger than it declares: refused")
            out.write(chunk)


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _is_hidden(name: str) -> bool:
    """Dot files and the __MACOSX folder every zip made on a Mac carries."""
    return name.startswith(".") or name == "__MACOSX"
