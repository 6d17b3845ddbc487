"""The side study in tools/ keeps running against the package (a tiny setting; its accuracies mean nothing)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_transfer_study_runs_end_to_end_and_reports_every_comparison(tmp_path):
    out = tmp_path / "study.json"
    command = [sys.executable, "tools/transfer_study.py", "--reviews", "60", "--steps", "4", "--seeds", "1",
               "--finetune-steps", "8", "--json", str(out)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out MLM accuracy" in proc.stdout
    report = json.loads(out.read_text())
    assert report["pretraining"]["tokens"] > 0
    runs = {(r["labels"], r["pooling"], r["start"]): r["test_accuracy"] for r in report["results"]}
    assert set(runs) == {(f, p, s) for f in (1.0, 0.1) for p in ("mean", "cls") for s in ("scratch", "pretrained")}
    assert all(len(accs) == 1 and 0.0 <= accs[0] <= 1.0 for accs in runs.values())


def test_transfer_study_punctuation_task_writes_every_run(tmp_path):
    out = tmp_path / "punctuation.json"
    command = [sys.executable, "tools/transfer_study.py", "--task", "punctuation", "--budgets", "6", "--seeds", "2",
               "--seed-offset", "7", "--finetune-steps", "3", "--eval-passages", "40", "--json", str(out)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["task"] == "punctuation" and "F1" in report["metric"]
    runs = sorted((r["labels"], r["start"], r["seed"]) for r in report["results"])
    assert runs == [(6, "pretrained", 7), (6, "pretrained", 8), (6, "scratch", 7), (6, "scratch", 8)]
    assert all(0.0 <= r["score"] <= 1.0 for r in report["results"])


def test_nsp_study_reports_baseline_course_bert_and_nsp_alone(tmp_path):
    out = tmp_path / "nsp.json"
    command = [sys.executable, "tools/nsp_study.py", "--steps", "4", "--eval-batches", "2", "--json", str(out)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert 0.0 <= report["surface_baseline"]["held_out"] <= 1.0 and 0.0 <= report["course_bert"] <= 1.0
    assert [step for step, _ in report["nsp_only"]["held_out"]] == [1, 2, 3, 4]
    assert "surface baseline" in proc.stdout and "NSP alone" in proc.stdout
