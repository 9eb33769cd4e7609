"""Runs off the threaded scheduler: worker processes, real dask LocalClusters, SLURM.

Every cluster here is a real ``distributed.LocalCluster`` of worker processes listening on
127.0.0.1. Outputs are compared with a threaded run in this process: labels must be
identical; embeddings bit-identical when torch uses the same thread count on both sides
(one thread: torch's CPU convolutions sum in an order that depends on the thread count,
a ~1e-7 relative difference otherwise, which the console-script test allows; so does the
batch size).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from cli_helpers import EXE, assert_bad_input, run_cli
from nets import labelled_setup

import stitchsafe
from stitchsafe.engine import SchedulerSpec, SlurmOptions, cluster_kwargs, parse_scheduler
from stitchsafe.errors import StitchsafeError
from stitchsafe.io import bookkeeping_path, done_mask_path

distributed = pytest.importorskip("distributed")

TILE = (4, 8, 8)
SEEDED = {"seed_threshold": 0.3, "seed_foreground_threshold": 0.5, "grow": 2}


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def local_cluster(workers: int = 2) -> Iterator[Any]:
    import dask

    env = {"OMP_NUM_THREADS": "1", "STITCHSAFE_TORCH_THREADS": "1"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return labelled_setup(tmp_path_factory.mktemp("distributed"))


def _predict(s: dict[str, Path], out: Path, **kwargs: Any) -> stitchsafe.PredictResult:
    return stitchsafe.predict(
        s["model"],
        s["input"],
        output=out,
        tile_shape=TILE,
        device="cpu",
        progress=False,
        **kwargs,
    )


def _read(out: Path, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    emb = np.asarray(zarr.open_array(out / "0", mode="r"))
    if not labels:
        return emb, None
    lab = np.asarray(zarr.open_array(out / "labels/instances/0", mode="r"))
    return emb, lab


@pytest.fixture(scope="module")
def reference(setup: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Threaded runs with one torch thread: plain links and seeded labels."""
    with one_torch_thread():
        plain = _predict(setup, setup["tmp"] / "ref-plain.zarr")
        seeded = _predict(setup, setup["tmp"] / "ref-seeded.zarr", **SEEDED)
    assert plain.objects and seeded.objects and plain.tiles == 4 * 6 * 5
    return {
        "plain": _read(setup["tmp"] / "ref-plain.zarr"),
        "seeded": _read(setup["tmp"] / "ref-seeded.zarr"),
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_cluster(2) as c:
        yield c


# -- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("threads", SchedulerSpec("threads")),
        ("processes", SchedulerSpec("processes")),
        ("processes:3", SchedulerSpec("processes", workers=3)),
        ("local", SchedulerSpec("local")),
        ("LOCAL:2", SchedulerSpec("local", workers=2)),
        ("tcp://10.1.2.3:8786", SchedulerSpec("address", address="tcp://10.1.2.3:8786")),
        ("tcp://node-7:8786/", SchedulerSpec("address", address="tcp://node-7:8786")),
    ],
)
def test_parse_scheduler(text: str, expected: SchedulerSpec) -> None:
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize("text", ["", "thread", "local:0", "local:x", "processes:-1", "tcp://"])
def test_parse_scheduler_refuses(text: str) -> None:
    with pytest.raises(StitchsafeError, match="--scheduler"):
        parse_scheduler(text)


# -- same output on every scheduler ---------------------------------------------------


@pytest.mark.parametrize("labels", ["plain", "seeded"])
def test_local_cluster_equals_threads(
    setup: dict[str, Path], reference: dict[str, Any], cluster: Any, labels: str
) -> None:
    out = setup["tmp"] / f"cluster-{labels}.zarr"
    extra = SEEDED if labels == "seeded" else {}
    result = _predict(setup, out, scheduler=cluster.scheduler_address, **extra)
    emb, lab = _read(out)
    ref_emb, ref_lab = reference[labels]
    assert np.array_equal(emb, ref_emb)
    assert np.array_equal(lab, ref_lab)
    assert result.tiles == 120 and result.objects == int(ref_lab.max())
    # Every tile is marked done, and the image complete.
    assert np.all(np.asarray(zarr.open_array(done_mask_path(out, ""))) == 1)
    assert zarr.open_group(out).attrs["stitchsafe"]["complete"] is True
    # The label scratch array is gone once the labels are final.
    assert not os.path.exists(bookkeeping_path(out, "", "new-labels"))


def test_segment_on_a_cluster_equals_threads(
    setup: dict[str, Path], reference: dict[str, Any], cluster: Any
) -> None:
    out = setup["tmp"] / "segment-cluster.zarr"
    with one_torch_thread():
        _predict(setup, out, labels=False)
    result = stitchsafe.segment(out, scheduler=cluster.scheduler_address, progress=False, **SEEDED)
    _, lab = _read(out)
    assert np.array_equal(lab, reference["seeded"][1])
    assert result.objects == int(lab.max())


def test_processes_equal_threads(setup: dict[str, Path], reference: dict[str, Any]) -> None:
    out = setup["tmp"] / "processes.zarr"
    with one_torch_thread():  # 2 workers on 2 cores: one torch thread each, like here
        _predict(setup, out, scheduler="processes:2")
    emb, lab = _read(out)
    assert np.array_equal(emb, reference["plain"][0])
    assert np.array_equal(lab, reference["plain"][1])


def test_console_script_local_cluster(setup: dict[str, Path], reference: dict[str, Any]) -> None:
    out = setup["tmp"] / "cli-local.zarr"
    proc = run_cli(
        "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
        "--output", str(out), "--tile-shape", ",".join(map(str, TILE)), "--device", "cpu",
        "--no-progress", "--json", "--scheduler", "local:2", "--batch-size", "4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tiles"] == 120 and "local:2" in report["device"]
    emb, lab = _read(out)
    ref_emb, ref_lab = reference["plain"]
    np.testing.assert_allclose(emb, ref_emb, rtol=1e-5, atol=1e-5)
    assert np.array_equal(lab, ref_lab)


# -- faults ----------------------------------------------------------------------------


def _chunks_written(out: Path) -> int:
    where = out / "0" / "c"
    return sum(len(files) for _, _, files in os.walk(where)) if where.exists() else 0


def test_a_worker_killed_mid_run_has_its_work_redone(
    setup: dict[str, Path], reference: dict[str, Any]
) -> None:
    out = setup["tmp"] / "worker-killed.zarr"
    with local_cluster(2) as c, distributed.Client(c) as client:
        pids = client.run(os.getpid)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                _predict(setup, out, scheduler=c.scheduler_address, labels=False)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 120
        while _chunks_written(out) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.is_alive(), "the run finished before a worker could be killed"
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = _chunks_written(out)
        runner.join(300)
        assert not runner.is_alive() and not errors, errors
        assert killed_at < 120  # the kill landed mid-run
        # The nanny started a fresh worker process in place of the killed one.
        assert victim not in client.run(os.getpid).values()
    emb, _ = _read(out, labels=False)
    assert np.array_equal(emb, reference["plain"][0])
    assert np.all(np.asarray(zarr.open_array(done_mask_path(out, ""))) == 1)


def test_resume_on_a_cluster_recomputes_only_unfinished_tiles(
    setup: dict[str, Path], reference: dict[str, Any], cluster: Any
) -> None:
    out = setup["tmp"] / "resume-cluster.zarr"
    with one_torch_thread():
        _predict(setup, out, labels=False)
    # Pretend the run died after half the tiles: clear their flags, spoil their chunks.
    done = zarr.open_array(done_mask_path(out, ""), mode="r+")
    flags = np.asarray(done[...])
    flags.reshape(-1)[60:] = 0
    done[...] = flags
    arr = zarr.open_array(out / "0", mode="r+")
    arr[:, 8:] = -1.0  # tiles 60.. are the grid's last two planes: z 8..16
    before = {p: p.stat().st_mtime_ns for p in (out / "0/c").rglob("*") if p.is_file()}
    time.sleep(0.05)
    _predict(setup, out, scheduler=cluster.scheduler_address, resume=True, **SEEDED)
    emb, lab = _read(out)
    assert np.array_equal(emb, reference["seeded"][0])
    assert np.array_equal(lab, reference["seeded"][1])
    after = {p: p.stat().st_mtime_ns for p in before}
    rewritten = {p for p in before if after[p] != before[p]}
    # Only the chunks of the 60 unfinished tiles were written again.
    assert len(rewritten) == 60
    assert all(p.relative_to(out / "0/c").parts[1] in ("2", "3") for p in rewritten)


# -- bad input -------------------------------------------------------------------------


def test_bad_scheduler_is_exit_2(setup: dict[str, Path]) -> None:
    proc = run_cli(
        "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
        "--scheduler", "cluster-please",
    )  # fmt: skip
    assert_bad_input(proc, "--scheduler", "tcp://host:port")


def test_unreachable_scheduler_is_exit_2(setup: dict[str, Path]) -> None:
    out = setup["tmp"] / "unreachable.zarr"
    proc = subprocess.run(
        [
            EXE, "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
            "--output", str(out), "--tile-shape", "4,8,8", "--scheduler", "tcp://127.0.0.1:9",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )  # fmt: skip
    assert_bad_input(proc, "could not reach the dask scheduler", "tcp://127.0.0.1:9")
    assert not out.exists()  # nothing written, so the same command can simply be rerun


# -- SLURM -----------------------------------------------------------------------------


def test_slurm_cluster_kwargs_request_gpus_memory_and_time() -> None:
    kw = cluster_kwargs(
        SlurmOptions(
            jobs=3,
            gpus=2,
            cores=16,
            memory="64GB",
            walltime="02:00:00",
            queue="gpu",
            extra={"job_extra_directives": ["--constraint=a100"], "account": "lab"},
        )
    )
    assert kw["processes"] == 2 and kw["cores"] == 16 and kw["memory"] == "64GB"
    assert kw["queue"] == "gpu" and kw["walltime"] == "02:00:00" and kw["account"] == "lab"
    assert kw["job_extra_directives"] == ["--gres=gpu:2", "--constraint=a100"]
    assert kw["worker_extra_args"] == ["--resources", "GPU=1"]
    assert "export STITCHSAFE_TORCH_THREADS=8" in kw["job_script_prologue"]


def test_slurm_cpu_jobs_request_no_gpu() -> None:
    kw = cluster_kwargs(SlurmOptions(gpus=0, cores=4))
    assert kw["processes"] == 1 and kw["job_extra_directives"] == []
    assert kw["worker_extra_args"] == []
    assert "export STITCHSAFE_TORCH_THREADS=1" in kw["job_script_prologue"]


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(jobs=0), "--cluster-jobs"),
        (dict(gpus=-1), "--cluster-gpus"),
        (dict(gpus=4, cores=2), "--cluster-cores"),
    ],
)
def test_slurm_options_refuse_nonsense(options: dict[str, int], words: str) -> None:
    with pytest.raises(StitchsafeError, match=words):
        SlurmOptions(**options)


def test_print_job_script(setup: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "scheduler_options: {host: 127.0.0.1}\n"
        "job_script_prologue: [module load cuda/12]\n"
        "account: imaging\n"
    )
    proc = run_cli(
        "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
        "--cluster", "slurm", "--cluster-gpus", "2", "--cluster-cores", "12",
        "--cluster-memory", "64GB", "--cluster-walltime", "02:30:00", "--cluster-queue", "gpu",
        "--cluster-config", str(config), "--print-job-script",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    for directive in (
        "#SBATCH -p gpu",
        "#SBATCH --cpus-per-task=12",
        "#SBATCH -t 02:30:00",
        "#SBATCH --gres=gpu:2",
        "#SBATCH -A imaging",
    ):
        assert directive in lines, (directive, script)
    assert any(line.startswith("#SBATCH --mem=") for line in lines)
    assert "module load cuda/12" in lines and "export STITCHSAFE_TORCH_THREADS=6" in lines
    worker = next(line for line in lines if "dask_worker" in line or "dask worker" in line)
    assert "tcp://127.0.0.1:" in worker and "--resources GPU=1" in worker
    assert "--nworkers 2" in worker and "--nthreads 6" in worker
    # Nothing was run or written.
    assert not (setup["input"] / "embeddings").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--print-job-script"], ("--cluster slurm",)),
        (["--cluster", "slurm", "--scheduler", "local:2"], ("drop --scheduler",)),
        (["--cluster", "slurm", "--cluster-config", "{config}"], ("--cluster-config", "mapping")),
        (["--cluster", "slurm", "--cluster-jobs", "0"], ("--cluster-jobs",)),
    ],
)
def test_cluster_bad_input(
    setup: dict[str, Path], tmp_path: Path, args: list[str], words: tuple[str, ...]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("- just\n- a list\n")
    proc = run_cli(
        "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
        *[a.replace("{config}", str(config)) for a in args],
    )  # fmt: skip
    assert_bad_input(proc, *words)


def _slurm_works() -> bool:
    import shutil

    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    probe = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=30)
    return probe.returncode == 0 and "idle" in probe.stdout


@pytest.mark.skipif(not _slurm_works(), reason="no running SLURM here (.ci/start-slurm)")
def test_predict_on_a_real_slurm(
    setup: dict[str, Path], reference: dict[str, Any], tmp_path: Path
) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(f"scheduler_options: {{host: 127.0.0.1}}\nlog_directory: {tmp_path}\n")
    out = setup["tmp"] / "slurm.zarr"
    proc = run_cli(
        "predict", "--model", str(setup["model"]), "--input", str(setup["input"]),
        "--output", str(out), "--tile-shape", ",".join(map(str, TILE)), "--device", "cpu",
        "--no-progress", "--json", "--cluster", "slurm", "--cluster-gpus", "0",
        "--cluster-cores", "1", "--cluster-memory", "2GB", "--cluster-walltime", "00:10:00",
        "--cluster-config", str(config),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "slurm" in json.loads(proc.stdout)["device"]
    emb, lab = _read(out)
    np.testing.assert_allclose(emb, reference["plain"][0], rtol=1e-5, atol=1e-5)
    assert np.array_equal(lab, reference["plain"][1])


def _index_after(seconds: float) -> int:
    """Runs in a pool worker: its number, after a pause that keeps it busy."""
    from stitchsafe.engine import worker_index

    time.sleep(seconds)
    return worker_index()


def test_process_pool_workers_are_numbered() -> None:
    """Workers take GPU ``number % count`` on a multi-GPU machine: numbers must differ."""
    from stitchsafe.engine import open_executor

    seen: list[int] = []
    with open_executor(parse_scheduler("processes:2"), device="cpu") as pool:
        deadline = time.monotonic() + 120
        # Workers start one after the other; keep both busy until both have answered.
        while set(seen) != {0, 1} and time.monotonic() < deadline:
            seen += [f.result() for f in [pool.submit(_index_after, 0.5) for _ in range(2)]]
    assert set(seen) == {0, 1}, seen


def test_relative_paths_reach_workers_started_elsewhere(
    setup: dict[str, Path], reference: dict[str, Any], cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster's workers run in another directory; relative paths must still work."""
    with distributed.Client(cluster) as client:
        assert set(client.run(os.getcwd).values()) == {os.getcwd()}  # workers: not tmp
    monkeypatch.chdir(setup["tmp"])
    result = stitchsafe.predict(
        "model.pt",
        "vol.zarr",
        output="relative.zarr",
        tile_shape=TILE,
        device="cpu",
        progress=False,
        scheduler=cluster.scheduler_address,
    )
    assert Path(result.output) == setup["tmp"] / "relative.zarr"
    emb, lab = _read(setup["tmp"] / "relative.zarr")
    assert np.array_equal(emb, reference["plain"][0])
    assert np.array_equal(lab, reference["plain"][1])
    segmented = stitchsafe.segment(
        "relative.zarr", scheduler=cluster.scheduler_address, progress=False, overwrite=True
    )
    assert segmented.objects == int(reference["plain"][1].max())
