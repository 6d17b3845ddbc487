"""Data-parallel training: 2 processes under torchrun (gloo, CPU) train exactly like 1 process on the same global
batch, hold identical weights, and their checkpoint resumes on a different number of processes."""
import importlib.util
import json
import os
import subprocess
import sys
from typing import NamedTuple

import pytest
import torch

from ptlm_course import distributed

SCRIPT = '''
"""A tiny GPT trained with the course's loop; under torchrun each rank saves its weights."""
import json, shutil, sys
from pathlib import Path

import torch

from ptlm_course import distributed
from ptlm_course.gpt import GPT, GPTConfig
from ptlm_course.distributed import train
from ptlm_course.training import TrainConfig


def main(out_dir, steps, checkpoint=None, copy_at=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=17, block_size=8, n_layers=2, n_heads=2, d_model=16, dropout=0.0))
    data = torch.randint(0, 17, (64, 9), generator=torch.Generator().manual_seed(1))

    def get_batch(split, generator):                     # a global batch of 8 rows, drawn from the generator
        rows = data[torch.randint(0, 64, (8,), generator=generator)]   # (8, 9)
        return rows[:, :-1], rows[:, 1:]

    def loss_fn(model, batch):
        return model(*batch)[1]

    def copy_checkpoint(step, model, history):
        if step == copy_at and distributed.is_main_process():
            shutil.copy(checkpoint, out_dir / f"step{step}.pt")

    config = TrainConfig(steps=steps, lr=1e-2, warmup_steps=2, eval_every=3, eval_batches=2, progress=False,
                         checkpoint_path=checkpoint, checkpoint_every=3 if checkpoint else None, device="cpu")
    history = train(model, config, get_batch, loss_fn, callbacks=[copy_checkpoint])
    torch.save(model.state_dict(), out_dir / f"weights_rank{distributed.rank()}.pt")
    if distributed.is_main_process():
        (out_dir / "history.json").write_text(json.dumps(history.to_dict()))
        (out_dir / "world_size.txt").write_text(str(distributed.world_size()))


if __name__ == "__main__":
    out_dir, steps, checkpoint, copy_at, resume = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
    main(out_dir, steps, None if checkpoint == "-" else checkpoint, None if copy_at == "-" else int(copy_at))
    if resume != "-":                                   # then resume another run's checkpoint, in a subfolder
        main(Path(out_dir) / "resumed", steps, resume)
'''


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "tiny_ddp_train.py"
    path.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location("tiny_ddp_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def torchrun(script_path, *args, nproc=2):
    """Run the script under torchrun (--standalone picks a free port itself), return nothing or fail loudly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(script_path), *map(str, args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def load(folder, rank=0):
    return torch.load(folder / f"weights_rank{rank}.pt", weights_only=True)


def assert_same_weights(a, b, exact=False):
    assert a.keys() == b.keys()
    for name in a:
        if exact:
            assert torch.equal(a[name], b[name]), f"{name} differs between the ranks"
        else:
            torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.fixture(scope="module")
def runs(script, tmp_path_factory):
    """A single-process run and a 2-process run of the script (6 steps each, checkpoints copied at step 3);
    the 2-process launch then also resumes the single-process run's step-3 checkpoint (steps 4..6)."""
    path, module = script
    one = tmp_path_factory.mktemp("one_process")
    module.main(one, 6, checkpoint=one / "checkpoint.pt", copy_at=3)          # in this (single) process
    two = tmp_path_factory.mktemp("two_processes")
    (two / "resumed").mkdir()
    (two / "resumed" / "from_one.pt").write_bytes((one / "step3.pt").read_bytes())
    torchrun(path, two, 6, two / "checkpoint.pt", 3, two / "resumed" / "from_one.pt")
    return two, one


def test_two_processes_hold_identical_weights(runs):
    two, _ = runs
    assert (two / "world_size.txt").read_text() == "2"
    assert_same_weights(load(two, 0), load(two, 1), exact=True)


def test_two_processes_match_one_process_with_the_same_global_batch(runs):
    two, one = runs
    assert_same_weights(load(two), load(one))
    h2, h1 = (json.loads((d / "history.json").read_text()) for d in (two, one))
    assert [r["step"] for r in h2["train"]] == [r["step"] for r in h1["train"]] == list(range(1, 7))
    for key, which in (("loss", "train"), ("grad_norm", "train"), ("val_loss", "eval")):
        assert [r[key] for r in h2[which]] == pytest.approx([r[key] for r in h1[which]], rel=1e-4, abs=1e-5)
    assert h1["train"][-1]["loss"] < h1["train"][0]["loss"]          # it learns


def test_checkpoint_of_two_processes_resumes_in_one(runs, script, tmp_path):
    two, one = runs
    _, module = script
    checkpoint = tmp_path / "resume.pt"
    checkpoint.write_bytes((two / "step3.pt").read_bytes())           # written by rank 0 after step 3
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 3 and not any(k.startswith("module.") for k in saved["model"])
    module.main(tmp_path, 6, checkpoint=checkpoint)                    # steps 4..6 in one process
    assert_same_weights(load(tmp_path), load(one))
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == list(range(1, 7))


def test_checkpoint_of_one_process_resumes_in_two(runs):
    two, one = runs
    resumed = two / "resumed"                                          # steps 4..6 in two processes
    assert (resumed / "world_size.txt").read_text() == "2"
    assert_same_weights(load(resumed, 0), load(resumed, 1), exact=True)
    assert_same_weights(load(resumed), load(one))
    history = json.loads((resumed / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == list(range(1, 7))


# --------------------------------------------------------------------------------------------------
# The helpers, in a single process
# --------------------------------------------------------------------------------------------------

class Pair(NamedTuple):
    ids: torch.Tensor
    labels: torch.Tensor


def test_shard_batch_keeps_rows_rank_modulo_world_size():
    x = torch.arange(12).view(6, 2)
    torch.testing.assert_close(distributed.shard_batch(x, rank=1, world_size=3), x[[1, 4]])
    shards = [distributed.shard_batch({"x": x, "y": (x[:, 0], x[:, 1])}, rank=r, world_size=2) for r in (0, 1)]
    assert shards[0]["x"][:, 0].tolist() == [0, 4, 8] and shards[1]["y"][1].tolist() == [3, 7, 11]
    pair = distributed.shard_batch(Pair(x, x[:, 0]), rank=0, world_size=2)
    assert isinstance(pair, Pair) and pair.labels.tolist() == [0, 4, 8]
    together = torch.cat([distributed.shard_batch(x, r, 2) for r in (0, 1)])
    assert sorted(together[:, 0].tolist()) == x[:, 0].tolist()        # every row once
    assert distributed.shard_batch(x, rank=0, world_size=1) is x


def test_shard_batch_explains_a_batch_it_cannot_split():
    with pytest.raises(ValueError, match="divisible by 4"):
        distributed.shard_batch(torch.zeros(6, 3), rank=0, world_size=4)
    with pytest.raises(ValueError, match=r"first dimensions are \[2, 4\]"):
        distributed.shard_batch((torch.zeros(4, 3), torch.zeros(2)), rank=0, world_size=2)


def test_helpers_are_no_ops_in_a_single_process():
    assert not distributed.is_distributed() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main_process()
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    assert distributed.unwrap_model(model) is model
    record = {"loss": 1.5, "n_tokens": 8, "seconds": 0.1}
    assert distributed.mean_record(record) == record
    assert distributed.all_reduce_mean({"a": 2.0}) == {"a": 2.0}
    get_batch = lambda split, generator: torch.zeros(3)              # noqa: E731
    assert distributed.sharded_get_batch(get_batch) is get_batch
    assert not distributed.launched_by_torchrun()
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")


def test_the_loop_knows_nothing_of_ddp_distributed_wraps_it():
    import ast
    import inspect

    from ptlm_course import training
    tree = ast.parse(inspect.getsource(training))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "distributed" not in imported and "torch.distributed" not in imported, imported
    assert issubclass(distributed.DataParallel, training.OneProcess)


def _tiny_run(train_fn):
    from ptlm_course.training import TrainConfig
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    data = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))

    def get_batch(split, generator):
        rows = data[torch.randint(0, 32, (8,), generator=generator)]
        return rows, rows[:, :2]

    def loss_fn(model, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y)

    config = TrainConfig(steps=5, lr=1e-2, eval_every=2, eval_batches=2, progress=False, device="cpu")
    return train_fn(model, config, get_batch, loss_fn).to_dict()


def test_distributed_train_in_one_process_is_the_loop_itself():
    from ptlm_course import training
    ours, loop = _tiny_run(distributed.train), _tiny_run(training.train)
    for which in ("train", "eval"):
        assert [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_s")} for r in ours[which]] == \
               [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_s")} for r in loop[which]]


def test_the_single_process_loop_refuses_to_run_as_n_copies_under_torchrun(monkeypatch):
    from ptlm_course import training
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=r"torchrun started 2 processes.*ptlm_course\.distributed\.train"):
        _tiny_run(training.train)
