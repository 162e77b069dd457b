"""Operating a long run: preflight before any input is read, re-running only the phases a
changed setting affects, status as JSON, the run's log file, and the Python API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import DEMO_JOB, cli, demo_overrides, set_args


def test_preflight_names_every_problem_in_one_line_before_any_input_is_read(corpus, tiny_vlm, tiny_clip, tmp_path):
    garbage = tmp_path / "not-a-head.pth"
    garbage.write_bytes(b"not torch weights")
    out = tmp_path / "out"
    sets = [*demo_overrides(corpus, tiny_vlm, out), "caption.captioners.1.model=Qwen/Qwen2.5-VL-7B-Instruct",
            f"filters.aesthetics.head={garbage}"]
    res = cli("run", str(DEMO_JOB), *set_args(sets))
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    lines = [line.removeprefix("error: ") for line in res.stderr.strip().splitlines()]
    assert len(lines) == 2 and all(line.startswith(f"{DEMO_JOB}: ") for line in lines), res.stderr
    assert lines[0].startswith(f"{DEMO_JOB}: caption.captioners.1.model: cannot load 'Qwen/Qwen2.5-VL-7B-Instruct'")
    assert lines[1].startswith(f"{DEMO_JOB}: filters.aesthetics.head: ")
    assert not out.exists()   # nothing read, nothing written
    # validate --check runs the same preflight; an output under a file cannot be created
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = cli("validate", str(DEMO_JOB), "--check", *set_args([*demo_overrides(corpus, tiny_vlm, blocker / "out")]))
    assert res.returncode == 2 and f"out: {blocker / 'out'}: cannot be created ({blocker} is not a folder)" in res.stderr
    res = cli("validate", str(DEMO_JOB), "--check", *set_args(demo_overrides(corpus, tiny_vlm, out)))
    assert res.returncode == 0, res.stderr


def latest_log(root: Path) -> str:
    return sorted((root / "logs").glob("*.log"))[-1].read_text()


def captions(root: Path) -> dict[str, dict]:
    return {r["key"]: dict(r["captions"]) for r in pq.read_table(root / "index").to_pylist()}


def test_a_changed_setting_reruns_only_the_phases_after_it(demo_run, corpus, tiny_vlm, tmp_path):
    import curate

    root = tmp_path / "run"
    shutil.copytree(demo_run.run_dir, root)
    sets = demo_overrides(corpus, tiny_vlm, root)
    kept = {p: p.stat().st_mtime_ns for p in [*(root / "_work/ingest").glob("*.parquet"), root / "_work/dedup.parquet"]}
    before = captions(root)
    assert not (root / "_work/staged").exists()   # a complete run deletes its staged bytes: re-runs fetch them again

    # scoring changed: nothing is captioned again, the scores and everything after are redone
    result = curate.run(DEMO_JOB, sets=[*sets, "hallucination.sentence_z=1.5"])
    assert result.manifest["counts"] == demo_run.manifest["counts"]
    assert "caption: done" in latest_log(root) and "'not_run': ['dense', 'short']" in latest_log(root)
    assert captions(root) == before
    assert {p: p.stat().st_mtime_ns for p in kept} == kept   # ingest and dedup work kept as committed
    assert not (root / "_work/staged").exists()

    # one captioner changed: only that one runs again
    result = curate.run(DEMO_JOB, sets=[*sets, "hallucination.sentence_z=1.5", "caption.captioners.1.prompt=Name the colours."],
                        caption__captioners__1__generation__max_new_tokens=4)
    assert "'not_run': ['dense']" in latest_log(root) and "'reused': ['dense']" in latest_log(root)
    after = captions(root)
    assert {k: c["dense"] for k, c in after.items()} == {k: c["dense"] for k, c in before.items()}
    assert after != before
    assert {p: p.stat().st_mtime_ns for p in kept} == kept

    # an ingest setting cannot change under committed work: refused, naming it and what --fresh redoes
    with pytest.raises(curate.JobError, match=r"filters\.resolution\.min_side: 1024 -> 2048.*--fresh to replace it \(re-ingest"):
        curate.run(DEMO_JOB, sets=[*sets, "filters.resolution.min_side=2048"])


def test_status_json_and_the_log_file_of_a_copied_run(demo_run, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(demo_run.run_dir, copy)
    res = cli("status", str(copy), "--json")
    assert res.returncode == 0, res.stderr
    state = json.loads(res.stdout)
    assert state["state"] == "complete" and state["run"] == str(copy.resolve())
    assert state["counts"] == demo_run.manifest["counts"]
    assert state["paths"]["report"] == str(copy.resolve() / "report" / "index.html")
    assert state["logs"] and all(p.startswith(str(copy.resolve() / "logs")) for p in state["logs"])
    shown = cli("status", str(copy)).stdout.replace("\n", "")   # the summary names the copy, not where it was made
    assert f"shards: {copy.resolve()}/ar1024/" in shown and str(demo_run.run_dir) not in shown
    log = Path(state["logs"][-1]).read_text()
    assert all(f"{phase}: done" in log for phase in ("ingest", "dedup", "caption", "write")) and "complete:" in log
    # in progress: units per phase, of the planned total
    (copy / "manifest.json").unlink()
    (copy / "_work" / "write.done").unlink()
    state = json.loads(cli("status", str(copy), "--json").stdout)
    units = len(list((copy / "_work" / "ingest").glob("*.done")))
    assert state["state"] == "in_progress" and state["phases"]["write"] == {"done": 0, "total": 1}
    assert state["phases"]["ingest"] == state["phases"]["caption"] == {"done": units, "total": units}


def test_an_error_during_a_run_is_one_line_naming_its_log(demo_run, corpus, tiny_vlm, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(demo_run.run_dir, root)
    for rel in ("manifest.json", "_work/write.done"):   # the write step is to be redone ...
        (root / rel).unlink()
    shutil.rmtree(root / "ar1024")
    (root / "ar1024").write_text("a file where the shard folder goes")   # ... and cannot be
    res = cli("run", str(DEMO_JOB), *set_args(demo_overrides(corpus, tiny_vlm, root)))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: NotADirectoryError: "), res.stderr   # the worker's own error
    log = errors[0].rsplit("(full traceback in ", 1)[1].rstrip(")")
    assert Path(log).parent == root.resolve() / "logs" and "Traceback (most recent call last)" in Path(log).read_text()
    assert any(line.split()[:1] == ["write"] and "eta" in line for line in res.stderr.splitlines())   # progress with time left
