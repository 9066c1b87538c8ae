import json

from rewards.artifacts import Journal, atomic_write_json, sha256_tree


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
