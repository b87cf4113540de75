"""Run methods over benchmark items, durably and resumably.

    run_dir/
      run.json         header: everything needed to reproduce (config, backend, methods, seed, version, items)
      results.jsonl    one line per (method, item), appended and fsynced as each finishes
      traces/videomem/ one memory-loop trace per item (its checkpoint inside the item)

A run killed at any moment (kill -9 included) resumes by running it again with the same run_dir: the
(method, item) pairs already in results.jsonl are skipped, a half-written last line is cut off, and an
item the memory loop was in the middle of continues after its last finished clip. Workers are threads
(model calls and video decoding release the GIL); the model is shared behind a lock (methods.LockedBackend).

A method that raises on an item (an unreadable video, a frame that does not fit) gets a result line with
`error` set, scored wrong, and the run goes on: one broken file must not stop a ten-hour run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from videomem import __version__
from videomem.config import RunConfig
from videomem.errors import ConfigError, ResumeError
from videomem.eval.items import Item
from videomem.eval.methods import Method, build_methods
from videomem.trace import run_key, semantic_config

RESULTS = "results.jsonl"
HEADER = "run.json"

log = logging.getLogger(__name__)

ResultCallback = Callable[[dict, int, int], None]  # (row, rows done, rows in the run)


def result_row(method: str, item: Item, out, wall_s: float, error: str | None = None) -> dict:
    """The results.jsonl line for one (method, item): the item's facts, the answer, correctness, costs."""
    letter = None if out is None else out.letter
    row: dict[str, Any] = {
        "method": method,
        "benchmark": item.benchmark,
        "item": item.id,
        "category": item.category,
        # The annotation's duration, else the one the method measured from the file.
        "duration": item.duration if item.duration is not None else (None if out is None else out.extra.get("video_duration")),
        "duration_group": item.duration_group,
        "gold": item.answer,
        "letter": letter,
        "correct": None if item.answer is None else letter == item.answer,  # None: no answer key (unscored)
        "parsed": letter is not None,
        "raw": None if out is None else out.raw,
        "provisional": [] if out is None else list(out.provisional),
        "provisional_correct": [] if out is None or item.answer is None else [a == item.answer for a in out.provisional],
        "latency_s": 0.0 if out is None else out.latency_s,
        "wall_s": round(wall_s, 4),
        "prompt_tokens": 0 if out is None else out.prompt_tokens,
        "completion_tokens": 0 if out is None else out.completion_tokens,
        "frames": 0 if out is None else out.frames,
        "calls": 0 if out is None else out.calls,
        "extra": {} if out is None else out.extra,
        "error": error,
        "meta": item.meta,  # the benchmark's own fields (native scores group by them)
    }
    return row


def read_results(run_dir: str | Path) -> list[dict]:
    """The finished result lines of a run (a half-written last line is ignored)."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # killed mid-write
            if line.strip():
                rows.append(json.loads(line))
    return rows


def read_header(run_dir: str | Path) -> dict:
    path = Path(run_dir) / HEADER
    return json.loads(path.read_text()) if path.exists() else {}


def _cut_half_line(path: Path) -> None:
    """Drop a last line without its newline (a write cut by a kill), so the next append starts clean."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())


class _ResultsWriter:
    def __init__(self, path: Path):
        _cut_half_line(path)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run, closed by close()
        self._lock = threading.Lock()

    def write(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False, default=str) + "\n"
        with self._lock:  # one line at a time: concurrent appends could interleave
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _header(items: Sequence[Item], methods: list[str], config: RunConfig, backend: str | None, extra: dict) -> dict:
    dump = config.model_dump()
    benchmarks = sorted({item.benchmark for item in items})
    return {
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "benchmark": benchmarks[0] if len(benchmarks) == 1 else benchmarks,
        "items": len(items),
        "methods": methods,
        "backend": backend,
        "model": dump["model"]["model"],
        "config_key": run_key({}, "", None, dump),
        "config": dump,
        "eval": extra,
    }


def _check_resumable(old: dict, new: dict, run_dir: Path) -> None:
    if semantic_config(old.get("config", {})) != semantic_config(new["config"]):
        raise ResumeError(f"{run_dir} holds a run with another configuration; use another run directory")
    if old.get("eval", {}).get("seed") != new["eval"].get("seed"):
        raise ResumeError(f"{run_dir} holds a run with another seed; use another run directory")


def run_eval(
    items: Sequence[Item],
    methods: Sequence[Method | str],
    run_dir: str | Path,
    *,
    config: RunConfig | None = None,
    workers: int = 1,
    backend=None,
    seed: int = 0,
    context_tokens: int | None = None,
    on_result: ResultCallback | None = None,
) -> list[dict]:
    """Answer every item with every method; return all result rows of the run (earlier ones included).

    methods: Method objects, or names (videomem, uniform, oracle, random) built with build_methods from
    `config` and `backend` (None: loaded from config.model, only if a model method has work left). seed drives the random guesser; decoding
    seeds are config.model.seed. context_tokens: the model's context for the uniform baseline's frame fit
    (None: read from the model). Rerunning with the same run_dir resumes."""
    config = config or RunConfig()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ids = [(item.benchmark, item.id) for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("items repeat a (benchmark, id): results could not tell them apart")
    names = [m if isinstance(m, str) else m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods repeat a name: {names}")
    backend_name = getattr(backend, "name", None) or config.model.model
    extra = {"workers": workers, "seed": seed, "context_tokens": context_tokens}
    header = _header(items, names, config, backend_name, extra)
    header_path = run_dir / HEADER
    if header_path.exists():
        old = json.loads(header_path.read_text())
        _check_resumable(old, header, run_dir)
        # Keep the original record; note what this resume added.
        header = {
            **old,
            "items": max(old.get("items", 0), len(items)),
            "methods": old.get("methods", []) + [n for n in names if n not in old.get("methods", [])],
            "resumed": old.get("resumed", []) + [{"at": header["created"], "eval": extra, "items": len(items)}],
        }
    tmp = header_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(header, indent=2, ensure_ascii=False))
    os.replace(tmp, header_path)

    writer = _ResultsWriter(run_dir / RESULTS)  # cuts a half line first
    rows = read_results(run_dir)
    done = {(r["method"], r["benchmark"], r["item"]) for r in rows}
    pending_names = {n for n in names for item in items if (n, item.benchmark, item.id) not in done}
    # Build (and load a model for) only the named methods that have work left: resuming a finished run
    # loads nothing.
    to_build = [n for n in names if n in pending_names and any(n == m for m in methods if isinstance(m, str))]
    built = dict(zip(to_build, build_methods(to_build, config, run_dir, backend=backend, seed=seed, context_tokens=context_tokens)))
    by_name = {**built, **{m.name: m for m in methods if not isinstance(m, str)}}
    todo = [(by_name[n], item) for item in items for n in names if (n, item.benchmark, item.id) not in done]
    total = len(rows) + len(todo)

    def work(method: Method, item: Item) -> dict:
        started = time.perf_counter()
        try:
            out, error = method.answer(item), None
        except Exception as e:
            out, error = None, f"{type(e).__name__}: {e}"
            log.warning("%s failed on %s/%s: %s", method.name, item.benchmark, item.id, error, exc_info=True)
        row = result_row(method.name, item, out, time.perf_counter() - started, error)
        writer.write(row)
        return row

    try:
        if workers <= 1:
            for method, item in todo:
                rows.append(work(method, item))
                if on_result:
                    on_result(rows[-1], len(rows), total)
        else:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="videomem-eval")
            try:
                pending = {pool.submit(work, m, item) for m, item in todo}
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        rows.append(future.result())
                        if on_result:
                            on_result(rows[-1], len(rows), total)
            finally:
                # On Ctrl-C: start nothing new; items in flight finish and are written (nothing is lost).
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        writer.close()
    return rows


def load_items(benchmark: str, root: str | Path, *, limit: int | None = None) -> list[Item]:
    """A benchmark's items through its registered loader (videomem.eval.loaders: the synthetic set and
    the real benchmarks from their official files)."""
    from videomem.eval.loaders import load_benchmark

    return load_benchmark(benchmark, Path(root), **({"limit": limit} if limit is not None else {}))


def eval_command(
    benchmark: str,
    root: str | Path,
    run_dir: str | Path,
    *,
    config: RunConfig,
    methods: Sequence[str] = ("videomem", "uniform"),
    workers: int = 1,
    seed: int = 0,
    context_tokens: int | None = None,
    limit: int | None = None,
    offset: int = 0,
    report: bool = True,
    log: Callable[[str], None] = print,
    on_result: ResultCallback | None = None,
) -> dict:
    """What `videomem eval` runs: load the items, run (or resume) every method on them, write the report
    (run_dir/report unless report=False); returns the summary. Rerun with the same run_dir to resume. offset
    skips the first items (with limit: a slice of the benchmark, e.g. one part of an evaluation split up)."""
    from videomem.eval.report import write_report
    from videomem.eval.summary import summarize

    if offset < 0:
        raise ConfigError(f"offset must be >= 0, got {offset}")
    items = load_items(benchmark, root, limit=None if limit is None else offset + limit)[offset:]
    log(f"{benchmark}: {len(items)} items, methods {', '.join(methods)}, {workers} worker(s), run dir {run_dir}")

    def progress(row: dict, done: int, total: int) -> None:
        verdict = "error" if row["error"] else {True: "right", False: "wrong", None: "unscored"}[row["correct"]]
        log(f"[{done}/{total}] {row['method']} {row['item']}: {row['letter'] or 'unparsed'} ({verdict})")

    rows = run_eval(
        items, list(methods), run_dir, config=config, workers=workers, seed=seed,
        context_tokens=context_tokens, on_result=on_result or progress,
    )  # fmt: skip
    summary = summarize(rows, methods)
    for name, s in summary["methods"].items():
        acc = "-" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}%"
        log(f"{name}: accuracy {acc} over {s['n']} items, {s['unparsed']} unparsed, {s['errors']} errors")
    if report:
        log(f"report: {write_report(run_dir)}")
    return summary
