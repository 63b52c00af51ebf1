"""What the Snakefile checks of the caches already on disk, at parse time, before any job.

Snakemake decides reruns by modification times; two things it cannot see are caught here:

- a model file replaced by another one (whatever its modification time): the model's
  sha256 is recorded in ``{output}/checksums/model.sha256``, an input of every rule that
  runs the model; where the model's content no longer matches it, the record is removed,
  so its rule writes it again and everything that depends on the model reruns;
- a damaged HDF5 cache (truncated, emptied, of another schema): it is moved aside to
  ``<name>.damaged``, so exactly that file is rebuilt, and what depends on it, instead of
  a job failing on it (and failing again on every rerun);
- a sample file replaced by another one with an older date (``mv``, ``cp -p``, ``rsync -a``,
  a backup unzipped): each preprocessed shard records its samples' content hashes
  (``source_sha256``); where a sample's content no longer matches, the shard is removed,
  so it is preprocessed again and everything that depends on it reruns. A file is hashed
  again only where its size, modification time, inode or change time moved since it was
  last hashed (:class:`StatCache`), so a run's start costs one ``stat`` per sample;
- a mask replaced so: each evaluation file records its shard's mask hashes (``mask_sha256``),
  and is removed where one no longer matches, so that shard's evaluation reruns.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from xaipipe import h5store
from xaipipe.atomic import write_bytes_atomic
from xaipipe.model import sha256_file

#: Where a run keeps the stat of every sample file it hashed, beside Snakemake's own records (a cache: without it
#: the files are hashed again).
STAT_CACHE = ".snakemake/xaipipe/source-stats.json"


def sample_files(path: str | os.PathLike) -> list[Path]:
    """The files that hold a sample: the file itself; a folder's files (a DICOM series; hidden ones left out);
    a MetaImage header (``.mhd``) and the data files its ``ElementDataFile`` names."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not path.name.lower().endswith(".mhd"):
        return [path]
    files = [path]
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return files
    for k, line in enumerate(lines):
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            value = value.strip()
            names = [n.strip() for n in lines[k + 1 :] if n.strip()] if value == "LIST" else [value]
            files += [path.parent / n for n in names if n != "LOCAL" and "%" not in n]
            break
    return files


def content_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a sample's content: of its file (as ``sha256sum`` computes it), or where several files hold it
    (:func:`sample_files`) of their names and hashes, in order."""
    files = sample_files(path)
    if not Path(path).is_dir() and len(files) == 1:
        return sha256_file(files[0])
    base = Path(path) if Path(path).is_dir() else Path(path).parent
    digest = hashlib.sha256()
    for member in files:
        content = sha256_file(member) if member.is_file() else "missing"
        digest.update(f"{os.path.relpath(member, base)}\0{content}\n".encode())
    return digest.hexdigest()


def _stat_key(path: str | os.PathLike) -> list[int] | None:
    """What changes when a file is replaced or written: size, modification and change time, inode (of every file
    that holds the sample, :func:`sample_files`); None where the path is gone."""
    if not os.path.exists(path):
        return None
    key = []
    for p in sample_files(path):
        try:
            st = os.stat(p)
        except OSError:
            key += [-1, -1, -1, -1]
            continue
        key += [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    return key


class StatCache:
    """path -> (stat key, sha256) of the sample files hashed before, so that an unchanged file is not read again."""

    def __init__(self, path: str | os.PathLike = STAT_CACHE):
        self.path = Path(path)
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def sha256(self, path: str) -> str | None:
        """The content hash of ``path`` (None where it is gone), hashed only where its stat moved."""
        key = _stat_key(path)
        if key is None:
            return None
        entry = self.entries.get(path)
        if entry is not None and entry[0] == key:
            return entry[1]
        digest = content_sha256(path)
        self.entries[path] = [key, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.path, json.dumps(self.entries).encode())


#: What a dry run's message adds where a real run would remove a cache file.
DRY_RUN_NOTE = " by a real run (this dry run removed nothing, and does not list those jobs)"


def forget_changed_sources(
    shards: list[str | os.PathLike], sample_file: Callable[[str], str], stats: StatCache, dry_run: bool = False
) -> list[str]:
    """Remove every preprocessed shard of ``shards`` whose samples' content differs from what it recorded
    (``source_sha256``); one message for each, naming the samples. ``sample_file``: a sample id's path.
    Shards written before the record existed, or whose samples are not there, are left to their rules.
    ``dry_run``: remove nothing, say so (a ``snakemake -n`` that removed a shard lost it for good, also where the
    sample was then put back)."""
    messages = []
    for shard_path in shards:
        if not os.path.exists(shard_path):
            continue
        try:
            with h5store.PreprocessedShard.open(shard_path) as shard:
                ids, recorded = shard.ids, shard.source_sha256
        except (OSError, ValueError, KeyError):
            continue
        if recorded is None:
            continue
        changed = []
        for sample_id, digest in zip(ids, recorded, strict=True):
            current = stats.sha256(sample_file(sample_id))
            if current is not None and current != digest:
                changed.append(sample_id)
        if changed:
            if not dry_run:
                os.unlink(shard_path)
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            names = ", ".join(repr(i) for i in changed[:3]) + more
            messages.append(
                f"{len(changed)} sample file(s) of {shard_path} hold other content than when it was preprocessed "
                f"({names}; whatever their dates): its preprocessing, predictions, heatmaps and overlays are "
                "computed again" + (DRY_RUN_NOTE if dry_run else "")
            )
    stats.save()
    return messages


def write_model_checksum(
    model_path: str | os.PathLike, out_path: str | os.PathLike, imports: Sequence[str | os.PathLike] = ()
) -> None:
    """Record the sha256 of the model file, and of the files of the modules it imports (config ``model.imports``),
    one line each, as ``sha256sum`` writes them (``sha256sum -c`` checks them)."""
    lines = [f"{sha256_file(path)}  {path}\n" for path in (model_path, *imports)]
    write_bytes_atomic(out_path, "".join(lines).encode())


def recorded_checksum(checksum_path: str | os.PathLike) -> str | None:
    """The sha256 recorded in a checksum file, or None where it holds none."""
    try:
        words = Path(checksum_path).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0] if words and len(words[0]) == 64 else None


def forget_stale_checksum(
    model_path: str | os.PathLike,
    checksum_path: str | os.PathLike,
    imports: Sequence[str | os.PathLike] = (),
    dry_run: bool = False,
) -> str | None:
    """Remove the checksum record where the model's content, or that of a module it imports, differs from it (or
    the modules are others); say so, or return None. ``dry_run``: remove nothing, say so.

    Hashes the files once, and only where a record exists (it does not before the first run).
    """
    if not os.path.exists(checksum_path) or not os.path.isfile(model_path):
        return None
    recorded = recorded_checksum(checksum_path)
    current = sha256_file(model_path)
    if recorded != current:
        if not dry_run:
            os.unlink(checksum_path)
        return (
            f"the model {model_path} is not the one the cached predictions and maps were computed with "
            f"(sha256 {current[:12]}, recorded {str(recorded)[:12]} in {checksum_path}): "
            "its predictions, heatmaps and overlays are computed again" + (DRY_RUN_NOTE if dry_run else "")
        )
    modules = _recorded_files(checksum_path)[1:]
    now = [(sha256_file(path) if os.path.isfile(path) else "", str(path)) for path in imports]
    if modules == now:
        return None
    if not dry_run:
        os.unlink(checksum_path)
    changed = [path for (sha, path) in now if (sha, path) not in modules] or [path for _, path in modules]
    return (
        f"the modules the model {model_path} imports (config model.imports) are not those the cached predictions "
        f"and maps were computed with ({', '.join(changed)} changed): its predictions, heatmaps and overlays are "
        "computed again" + (DRY_RUN_NOTE if dry_run else "")
    )


def _recorded_files(checksum_path: str | os.PathLike) -> list[tuple[str, str]]:
    """The (sha256, path) lines of a checksum file."""
    try:
        lines = Path(checksum_path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [(line[:64], line[66:]) for line in lines if len(line) > 66]


def move_damaged_aside(files: Mapping[str | os.PathLike, str], dry_run: bool = False) -> list[tuple[Path, str]]:
    """Move every existing file of ``files`` (path -> HDF5 schema) that is damaged to ``<name>.damaged``.

    Returns (path, message) for each file moved; the message names it, says why and where
    it went. Missing files are left to their rules. ``dry_run``: move nothing, say so.
    """
    moved = []
    for path, schema in files.items():
        path = Path(path)
        if not path.exists():
            continue
        why = h5store.problem(path, schema)
        if why is None:
            continue
        aside = path.with_name(path.name + ".damaged")
        if dry_run:
            moved.append((path, f"{path} is damaged ({why}): a real run moves it aside to {aside} and rebuilds it "
                                "(this dry run moved nothing)"))  # fmt: skip
            continue
        os.replace(path, aside)
        moved.append((path, f"{path} is damaged ({why}): moved aside to {aside}; it is rebuilt by this run"))
    return moved


def forget_changed_masks(
    files: Mapping[str, Sequence[str | None]], stats: StatCache, dry_run: bool = False
) -> list[str]:
    """Remove every evaluation file of ``files`` (path -> its shard's mask paths, None where a sample has none)
    whose masks' content differs from what it recorded (``mask_sha256``): a mask replaced by another with an older
    date; one message for each, naming the samples. Files without the record are left to their rules.
    ``dry_run``: remove nothing, say so."""
    messages = []
    current: dict[str, str] = {}  # each mask stat'ed once, however many methods' files name it

    def digest_of(mask: str) -> str:
        if mask not in current:
            current[mask] = stats.sha256(mask) or ""
        return current[mask]

    for path, masks in files.items():
        if not os.path.exists(path):
            continue
        try:
            recorded = h5store.read_mask_sha256(path)
        except (OSError, ValueError, KeyError):
            continue
        if recorded is None or len(recorded) != len(masks):
            continue
        changed = [
            mask for mask, digest in zip(masks, recorded, strict=True) if mask is not None and digest_of(mask) != digest
        ]  # fmt: skip
        if changed:
            if not dry_run:
                os.unlink(path)
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            messages.append(
                f"{len(changed)} mask file(s) of {path} hold other content than when it was evaluated "
                f"({', '.join(changed[:3])}{more}; whatever their dates): its evaluation is computed again"
                + (DRY_RUN_NOTE if dry_run else "")
            )
    stats.save()
    return messages


#: The files a run writes once per shard or sample, by folder pattern under a model's output folder (or the folder of
#: its preprocessed shards): what :func:`orphan_outputs` looks through.
PER_SAMPLE_OUTPUTS = (
    "preprocessed/shard-*.h5", "predictions/shard-*.h5", "heatmaps/*/shard-*.h5", "evaluation/*/shard-*.h5",
    "overlays/*/*",
)  # fmt: skip


def orphan_outputs(roots: Sequence[str | os.PathLike], expected: Sequence[str | os.PathLike]) -> list[str]:
    """The per-shard and per-sample outputs under ``roots`` (:data:`PER_SAMPLE_OUTPUTS`) that are none of
    ``expected`` (the run's targets): an earlier run's, for samples since removed or renamed, another
    ``shard_size``, a variant since removed. They are in none of this run's tables or pages, but a glob over the
    folders (``heatmaps/*/shard-*.h5``) would count them, and an overlay of a removed sample looks like a current
    one. Hidden files (an interrupted write's) and ``.damaged`` files (moved aside) are not listed."""
    wanted = {os.path.abspath(p) for p in expected}
    found = []
    for root in dict.fromkeys(os.path.abspath(r) for r in roots):
        for pattern in PER_SAMPLE_OUTPUTS:
            for path in sorted(Path(root).glob(pattern)):
                name = path.name
                if name.startswith(".") or name.endswith(".damaged") or not path.is_file():
                    continue
                if str(path) not in wanted:
                    found.append(str(path))
    return found


def former_model_folders(output: str | os.PathLike, roots: Sequence[str | os.PathLike]) -> list[str]:
    """The folders right under ``output`` that hold a model's outputs (``predictions/`` or ``heatmaps/``) and are
    none of ``roots`` (this config's models' folders): a model since removed from ``models``, or the models' folders
    after a switch to one ``model.path``, whose files :func:`orphan_outputs` should list with the rest. A folder with
    an ``experiments.tsv`` is another study's output (``results/methods`` under ``results``), not a model's."""
    current = {os.path.abspath(r) for r in roots}
    found = []
    for folder in sorted(Path(output).glob("*/")):
        if os.path.abspath(folder) in current or folder.name.startswith(".") or (folder / STUDY_MARK).exists():
            continue
        if (folder / "predictions").is_dir() or (folder / "heatmaps").is_dir():
            found.append(str(folder))
    return found


#: The file every study writes at its output's root (workflow/rules/common.smk's EXPERIMENTS), and no model folder.
STUDY_MARK = "experiments.tsv"


def orphans_warning(orphans: Sequence[str], output: str) -> str | None:
    """The start-of-run warning for :func:`orphan_outputs`, or None."""
    if not orphans:
        return None
    examples = ", ".join(os.path.relpath(p) for p in orphans[:3])
    return (
        f"xaipipe: {len(orphans)} file(s) under {output} are outputs of no sample, shard or variant of this config "
        f"(an earlier run's: samples removed or renamed, another shard_size, a variant or model removed), e.g. "
        f"{examples}; "
        "no table or page of this run reads them, but a glob over the folders would: delete them if you no longer "
        "need them (xaipipe deletes nothing of yours)"
    )
