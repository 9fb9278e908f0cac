"""The Hugging Face hub: references to its files, and fetching into the HF cache (honouring HF_HUB_OFFLINE).

    HubFile.parse(ref)        `owner/name/path/in/repo` -> HubFile; also `spaces/...`, `datasets/...` and a
                              pinned revision `owner/name@REV/path`; None when `ref` names no file of a repo
    fetch_file(file)          `hf_hub_download`: the file's path in the HF cache
    snapshot(repo, patterns)  `snapshot_download(allow_patterns=...)`: the repo's local snapshot directory
    repo_file(repo, name)     one file of a model repo, or None where it has none (or the hub cannot say)
    repo_id_of(name)          `owner/name[@revision]` -> (repo id, revision), or None when `name` is no repo id
    upload_folder(dir, repo)  `HfApi.create_repo` + `upload_folder`: a local directory as a model repo's files

Every failure is one CheckpointError line saying what was asked and why it failed: offline (HF_HUB_OFFLINE=1) and
not in the cache, no such repo (or a private or gated one), no such file, or the hub unreachable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.errors import CheckpointError

REPO_TYPES = {"spaces": "space", "datasets": "dataset"}  # the hub's URL prefixes -> `repo_type`
REPO_ID = re.compile(r"([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?")  # owner/name[@revision]


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repo, written `[spaces/|datasets/]owner/name[@revision]/path/in/repo`."""

    repo_id: str
    filename: str
    repo_type: str = "model"
    revision: str | None = None

    @classmethod
    def parse(cls, ref: str) -> HubFile | None:
        """The file `ref` names, or None when it has fewer than three parts (a repo id, a bare file name)."""
        parts = str(ref).strip("/").split("/")
        repo_type = REPO_TYPES.get(parts[0], "model") if len(parts) > 3 else "model"
        if repo_type != "model":
            parts = parts[1:]
        if len(parts) < 3 or not all(parts):
            return None
        name, _, revision = parts[1].partition("@")
        return cls(f"{parts[0]}/{name}", "/".join(parts[2:]), repo_type, revision or None)

    def __str__(self) -> str:
        prefix = {v: f"{k}/" for k, v in REPO_TYPES.items()}.get(self.repo_type, "")
        revision = f"@{self.revision}" if self.revision else ""
        return f"{prefix}{self.repo_id}{revision}/{self.filename}"


def fetch_file(file: HubFile, note: str = "") -> Path:
    """The file in the HF cache, downloaded unless it is there (or HF_HUB_OFFLINE=1); `note` ends the error."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(file.repo_id, file.filename, repo_type=file.repo_type, revision=file.revision))
    except Exception as e:
        raise CheckpointError(f"{file}: {why(e, file.repo_id, file.filename)}{note}") from None


def snapshot(repo_id: str, patterns: list[str] | None, revision: str | None = None) -> Path:
    """The local snapshot of a model repo with the files matching `patterns` (None: all of them), downloaded unless
    HF_HUB_OFFLINE=1; `revision`: a branch, tag or commit (None: main)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=patterns, revision=revision))
    except Exception as e:
        raise CheckpointError(f"{repo_id}: not a local path; on the hub: {why(e, repo_id)}") from None


def repo_file(repo_id: str, filename: str) -> Path | None:
    """One file of a model repo in the HF cache (downloaded if needed); None if it has none or cannot be had."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename))
    except Exception:
        return None


def repo_id_of(name: str) -> tuple[str, str | None] | None:
    """(repo id, revision) of a model repo written `owner/name[@revision]`; None for anything else (a preset name,
    a file name, a path of more parts, a YAML file)."""
    m = REPO_ID.fullmatch(str(name))
    if m is None or m[1].endswith((".yaml", ".yml")):
        return None
    return m[1], m[2]


def upload_folder(
    folder: str | Path,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload video-SALMONN model",
) -> str:
    """Every file of `folder` as the files of the model repo `repo_id` (created if it does not exist; `private`
    applies to a new repo); `token`: None uses the logged-in one. Returns the commit's URL."""
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=commit_message
        )
    except Exception as e:
        from huggingface_hub import errors

        if isinstance(e, errors.HfHubHTTPError) and getattr(e.response, "status_code", None) in (401, 403):
            reason = "not allowed: log in with `hf auth login` (a token with write access) or pass a token"
        else:
            text = str(e).strip()
            reason = f"{type(e).__name__}{': ' + text.splitlines()[0] if text else ''}"
        raise CheckpointError(f"{repo_id}: cannot upload to the hub ({reason})") from None
    return str(getattr(info, "commit_url", info))


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) was set when huggingface_hub was imported."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def why(e: Exception, repo_id: str, filename: str | None = None) -> str:
    """What a hub exception means, in a few words (naming the repo and file where the error is about them)."""
    from huggingface_hub import errors

    if isinstance(e, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        if offline():
            return "not in the Hugging Face cache, and HF_HUB_OFFLINE=1 (unset it to download)"
        return "not in the Hugging Face cache, and the hub cannot be reached"
    if isinstance(e, errors.GatedRepoError):
        return f"{repo_id} is gated: accept its terms on huggingface.co and log in (`hf auth login`)"
    if isinstance(e, errors.RepositoryNotFoundError):
        return f"the hub has no repo {repo_id} (or it is private: log in with `hf auth login`)"
    if isinstance(e, errors.RevisionNotFoundError):
        return f"{repo_id} has no such revision"
    if isinstance(e, errors.EntryNotFoundError):
        return f"{repo_id} has no file {filename}" if filename else f"{repo_id}: no such file"
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return f"cannot be fetched from the hub ({type(e).__name__}{': ' + first if first else ''})"
