"""Moving exported checkpoints (policy + model card) between local folders and the Hugging Face Hub.

A reference that is an existing path, or starts with ``/``, ``.`` or ``~``, is a local folder; ``owner/name`` is a
Hub repository (write ``./owner/name`` for a local folder of that shape). Hub access needs network and, to push,
``HF_TOKEN`` in the environment (read by huggingface_hub; never saved here).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from rewards.artifacts import atomic_replace_dir
from rewards.errors import UserError
from rewards.reporting.model_card import read_card, write_card

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(reference: str) -> bool:
    if reference.startswith(("/", ".", "~")) or Path(reference).expanduser().exists():
        return False
    return bool(HUB_ID.match(reference))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def _copy_folder(source: Path, target: Path, card: dict | None = None) -> Path:
    """Copy ``source`` to ``target`` atomically (temp folder + rename); ``target`` must not hold another checkpoint.
    ``card``: a model card to write over the copied one."""
    if target.resolve() == source.resolve():
        raise UserError(f"{target}: source and destination are the same folder; choose another --to")
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target}: folder exists and is not empty; choose a new folder or remove it first")

    def write(folder: Path) -> None:
        shutil.copytree(source, folder)
        if card is not None:
            write_card(folder, card)

    return atomic_replace_dir(target, write)


def release_check(card: dict, source: Path, force: bool) -> dict | None:
    """Refuse a checkpoint whose gate said ``release: false`` unless ``force``; forced, the card to push instead,
    recording ``forced_release: true`` with the gate's reason."""
    gate = card.get("safety", {}).get("gate", {})
    if gate.get("release", card.get("metrics", {}).get("release")) is not False:
        return None
    reason = gate.get("reason", "no reason recorded")
    if not force:
        raise UserError(f"{source}: the release gate said do not release ({reason}); fix the model, or push with "
                        "--force to publish it anyway (the pushed card records that)")
    return {**card, "forced_release": True, "forced_release_reason": reason}


def default_destination(reference: str) -> Path:
    name = reference.rstrip("/").replace("/", "__") if is_hub_id(reference) else Path(reference).resolve().name
    return Path("checkpoints") / name


def pull_checkpoint(reference: str, to: str | Path | None = None, revision: str | None = None) -> Path:
    """Copy a checkpoint (local folder or Hub repo) into ``to``; checks that it carries a model card."""
    target = Path(to).expanduser() if to else default_destination(reference)
    if is_hub_id(reference):
        try:
            from huggingface_hub import snapshot_download

            tmp = target.with_name(f".{target.name}.download-{os.getpid()}")
            snapshot_download(reference, revision=revision, local_dir=str(tmp))
        except Exception as exc:  # network, auth and not-found errors all end the same way for the user
            raise UserError(f"pull: cannot download {reference!r} from the Hugging Face Hub ({_one_line(exc)}); "
                            "check the network and HF_TOKEN, or pull from a local path") from None
        try:
            read_card(tmp)
            shutil.rmtree(tmp / ".cache", ignore_errors=True)
            return _copy_folder(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    source = Path(reference).expanduser()
    if not source.is_dir():
        raise UserError(f"{source}: checkpoint folder not found (nor a Hub id like owner/name)")
    read_card(source)
    return _copy_folder(source, target)


def push_checkpoint(checkpoint: str | Path, destination: str, private: bool = True, force: bool = False) -> str:
    """Copy a checkpoint to a local folder, or upload it to a Hub repository (created if missing).

    A checkpoint the release gate held back (``release: false``) is refused unless ``force``.
    """
    source = Path(checkpoint).expanduser()
    if not source.is_dir():
        raise UserError(f"{source}: checkpoint folder not found")
    card = read_card(source)
    forced = release_check(card, source, force)
    if not is_hub_id(destination):
        return str(_copy_folder(source, Path(destination).expanduser(), forced))
    with tempfile.TemporaryDirectory() as staging:
        folder = source
        if forced is not None:  # the Hub gets the card that says it was forced, never the original
            folder = _copy_folder(source, Path(staging) / source.name, forced)
        _upload(folder, destination, private, card.get("name", source.name))
    return f"https://huggingface.co/{destination}"


def _upload(folder: Path, destination: str, private: bool, name: str) -> None:
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(destination, private=private, exist_ok=True)
        api.upload_folder(repo_id=destination, folder_path=str(folder),
                          commit_message=f"counsel-align checkpoint {name}")
    except Exception as exc:  # network, auth and permission errors all end the same way for the user
        raise UserError(f"push: cannot upload to {destination!r} on the Hugging Face Hub ({_one_line(exc)}); "
                        "check the network and that HF_TOKEN is set with write access") from None

