"""Run traces: one JSONL file per run that is both the record and the checkpoint.

Line 1 is the header (run key, video, question, whole config, version); then one line per finished
clip; then a final line. Each line is flushed and fsynced before the next clip starts, so a run killed
at any moment (Ctrl-C, kill -9, power loss) loses at most the clip in flight, and `--resume` reads the
last step's memory back and continues with the next clip. A half-written last line (killed mid-write)
is dropped on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from videomem.errors import ResumeError

# Config fields that change how a run is executed but not what it computes: a run may be resumed
# with other values for these.
_EXECUTION_ONLY = {
    ("clips", "decode"), ("clips", "prefetch"),
    ("model", "device"), ("model", "timeout"), ("model", "retries"), ("model", "concurrency"),
    ("model", "base_url"), ("model", "api_key_env"), ("model", "return_token_ids"),
}


@dataclass
class StepRecord:
    """Everything about one clip's step (method.md 1.3-1.4)."""

    clip: int  # 0-based
    start: float
    end: float
    timestamps: list[float]
    frame_indices: list[int]
    memory_before: str
    memory_after: str
    raw_output: str
    answer: str | None  # option letter for multiple choice, else answer text
    answer_raw: str | None
    prompt_tokens: int
    completion_tokens: int
    memory_tokens: int  # after the cap
    memory_tokens_written: int  # as the model wrote it
    memory_truncated: bool
    finish_reason: str
    latency_s: float  # model time for this step
    decode_wait_s: float  # time the loop waited for the clip's frames (0 when prefetch hid decoding)
    repairs: list[str] = field(default_factory=list)


# The config sections that decide what inference computes (training sections do not).
_INFERENCE_SECTIONS = ("clips", "model", "memory")


def semantic_config(config: dict) -> dict:
    """The part of a RunConfig dump that changes an answer: inference sections, less execution-only fields."""
    return {
        section: {k: v for k, v in config.get(section, {}).items() if (section, k) not in _EXECUTION_ONLY}
        for section in _INFERENCE_SECTIONS
    }


def run_key(video: dict, question: str, options: list[str] | None, config: dict) -> str:
    """Identity of a run: same key = same computation, so its trace can be resumed."""
    blob = json.dumps(
        {"video": video, "question": question, "options": options, "config": semantic_config(config)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_runs_dir() -> Path:
    base = os.environ.get("VIDEOMEM_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "videomem"
    )
    return Path(base) / "runs"


@dataclass
class Trace:
    header: dict[str, Any]
    steps: list[StepRecord]
    final: dict[str, Any] | None


def read_trace(path: Path) -> Trace:
    """Read a trace, ignoring a half-written last line."""
    header, steps, final = None, [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # killed mid-write
            row = json.loads(line)
            kind = row.pop("type")
            if kind == "run":
                header = row
            elif kind == "step":
                steps.append(StepRecord(**row))
            elif kind == "final":
                final = row
    if header is None:
        raise ResumeError(f"{path} is not a videomem trace (no header line)")
    return Trace(header, steps, final)


class TraceWriter:
    """Appends durable lines to a trace."""

    def __init__(self, path: Path, header: dict[str, Any] | None = None, *, resume_from: int | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is None:
            # The header goes in through a temporary file: a run killed before it is durable leaves no
            # trace at all (a fresh start next time), never an empty file that reads as "not a trace".
            tmp = path.with_suffix(path.suffix + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps({"type": "run", **(header or {})}, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self._file = open(path, "a", encoding="utf-8")
        else:
            # Keep the header and the first `resume_from` steps; drop anything after (a half line,
            # a final line from an older run).
            keep, steps_kept = [], 0
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break
                    kind = json.loads(line)["type"]
                    if kind == "final" or (kind == "step" and steps_kept == resume_from):
                        break
                    steps_kept += kind == "step"
                    keep.append(line)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text("".join(keep), encoding="utf-8")
            os.replace(tmp, path)
            self._file = open(path, "a", encoding="utf-8")

    def _write(self, row: dict) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def step(self, record: StepRecord) -> None:
        self._write({"type": "step", **asdict(record)})

    def final(self, row: dict) -> None:
        self._write({"type": "final", **row})

    def close(self) -> None:
        self._file.close()
