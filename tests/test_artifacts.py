import json
from pathlib import Path

import pytest

from rewards.artifacts import Journal, atomic_replace_dir, atomic_write_json, save_dataset_atomic, sha256_tree


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a" / "m.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"x": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["m.json"]


def test_journal_ignores_a_torn_last_line(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append_many([{"key": "a", "v": 1}, {"key": "b", "v": 2}])
    with open(journal.path, "a") as handle:
        handle.write('{"key": "c", "v"')  # killed mid-write
    assert sorted(journal.done()) == ["a", "b"]


def test_tree_hash_tracks_content_and_ignores_manifest(tmp_path):
    (tmp_path / "x.txt").write_text("one")
    first = sha256_tree(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / ".fingerprint").write_text("f")
    assert sha256_tree(tmp_path) == first
    (tmp_path / "x.txt").write_text("two")
    assert sha256_tree(tmp_path) != first


def test_a_torn_tail_does_not_swallow_the_next_record(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append_many([{"key": "a"}, {"key": "b"}])
    with open(journal.path, "a") as handle:
        handle.write('{"key": "t", "v"')  # killed mid-write
    journal.append_many([{"key": "c"}])
    journal.append_many([{"key": "d"}])
    assert [r["key"] for r in journal.records()] == ["a", "b", "c", "d"]


def test_a_complete_last_record_without_its_newline_is_kept(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.path.write_text('{"key": "a"}\n{"key": "b"}')
    journal.append_many([{"key": "c"}])
    assert [r["key"] for r in journal.records()] == ["a", "b", "c"]
    assert journal.path.read_text().endswith('{"key": "c"}\n')


def test_a_journal_whose_only_line_is_torn_starts_empty(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.path.write_text('{"key": "a", ')
    journal.append_many([{"key": "b"}])
    assert journal.path.read_text() == '{"key": "b"}\n'


def _write_files(**files: str):
    def write(folder):
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    return write


def test_atomic_replace_dir_replaces_a_full_folder_and_clears_a_dead_writers_leftovers(tmp_path):
    target = tmp_path / "out"
    atomic_replace_dir(target, _write_files(a="1", b="2"))
    dead = tmp_path / ".out.tmp-999999999-deadbeef"  # a writer killed mid-write (no such process)
    dead.mkdir()
    (dead / "partial").write_text("x")
    atomic_replace_dir(target, _write_files(c="3"))
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_writer_leaves_the_old_folder_and_no_temp(tmp_path):
    target = tmp_path / "out"
    atomic_replace_dir(target, _write_files(a="1"))

    def broken(folder):
        folder.mkdir()
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_replace_dir(target, broken)
    assert (target / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_dataset_dict_saved_over_an_existing_dataset(tmp_path):
    from datasets import Dataset, DatasetDict, load_from_disk

    save_dataset_atomic(DatasetDict({"train": Dataset.from_dict({"x": [1]})}), tmp_path / "dataset")
    save_dataset_atomic(DatasetDict({"train": Dataset.from_dict({"x": [2, 3]})}), tmp_path / "dataset")
    assert load_from_disk(str(tmp_path / "dataset"))["train"]["x"] == [2, 3]


def test_final_model_replaces_an_older_model_folder_whole(tmp_path):
    """A rerun's save never mixes with files of an earlier (killed or differently configured) save."""
    from types import SimpleNamespace

    from rewards.training.checkpointing import save_final_model

    def save_model(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"new")

    trainer = SimpleNamespace(save_model=save_model, is_world_process_zero=lambda: True,
                              accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None),
                                                          wait_for_everyone=lambda: None))
    tokenizer = SimpleNamespace(save_pretrained=lambda folder: (Path(folder) / "tokenizer.json").write_text("{}"))
    out = tmp_path / "model"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")  # from an earlier save of another kind
    (tmp_path / ".model.staging").mkdir()  # a save killed midway
    (tmp_path / ".model.staging" / "partial").write_text("x")
    save_final_model(trainer, tokenizer, out)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "tokenizer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
