"""`videomem` command line: info, ask, demo, serve.

Flags are overrides of the one config (videomem/config.py): each is declared against a dotted field
and takes its help text from that field, so file and flags cannot drift apart. Errors a user can act
on print one line and exit non-zero; finished clips stay in the trace.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from videomem.config import RunConfig, field_help, load_config
from videomem.errors import VideoMemError
from videomem.parse import LETTERS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Answer questions about long videos with a bounded, rewritable memory (VideoMem).",
)
out = Console()
err = Console(stderr=True)


def _say_error(message: str) -> None:
    """One line on stderr, never wrapped (scripts and tests read it)."""
    sys.stderr.write(f"error: {message}\n")


def _flag(path: str, *names: str, **kw):
    return typer.Option(*names, help=field_help(path), show_default=False, **kw)


# Flag name -> config field. The ask/demo/serve commands share these.
_FIELDS = {
    "backend": "model.backend",
    "model": "model.model",
    "base_url": "model.base_url",
    "device": "model.device",
    "dtype": "model.dtype",
    "frames_as": "model.frames_as",
    "max_new_tokens": "model.max_new_tokens",
    "temperature": "model.temperature",
    "clips": "clips.clips",
    "clip_seconds": "clips.clip_seconds",
    "frames_per_clip": "clips.frames_per_clip",
    "fps": "clips.fps",
    "max_pixels": "clips.max_pixels",
    "decode": "clips.decode",
    "prefetch": "clips.prefetch",
    "memory_tokens": "memory.max_tokens",
}

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML or JSON config file; flags override it.")]
BackendOpt = Annotated[Optional[str], _flag("model.backend", "--backend")]
ModelOpt = Annotated[Optional[str], _flag("model.model", "--model", "-m")]
BaseUrlOpt = Annotated[Optional[str], _flag("model.base_url", "--base-url")]
DeviceOpt = Annotated[Optional[str], _flag("model.device", "--device")]
DtypeOpt = Annotated[Optional[str], _flag("model.dtype", "--dtype")]
FramesAsOpt = Annotated[Optional[str], _flag("model.frames_as", "--frames-as")]
MaxNewOpt = Annotated[Optional[int], _flag("model.max_new_tokens", "--max-new-tokens")]
TempOpt = Annotated[Optional[float], _flag("model.temperature", "--temperature")]
ClipsOpt = Annotated[Optional[int], _flag("clips.clips", "--clips", "-T")]
ClipSecOpt = Annotated[Optional[float], _flag("clips.clip_seconds", "--clip-seconds")]
FpcOpt = Annotated[Optional[int], _flag("clips.frames_per_clip", "--frames-per-clip", "-f")]
FpsOpt = Annotated[Optional[float], _flag("clips.fps", "--fps")]
PixOpt = Annotated[Optional[int], _flag("clips.max_pixels", "--max-pixels")]
DecodeOpt = Annotated[Optional[str], _flag("clips.decode", "--decode")]
PrefetchOpt = Annotated[Optional[bool], _flag("clips.prefetch", "--prefetch/--no-prefetch")]
MemOpt = Annotated[Optional[int], _flag("memory.max_tokens", "--memory-tokens")]


def _config(config_file: Optional[Path], flags: dict) -> RunConfig:
    return load_config(config_file, {_FIELDS[name]: value for name, value in flags.items() if name in _FIELDS})


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("clips"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def _memory_timeline(result) -> Table:
    table = Table(title="Memory timeline", show_lines=True)
    table.add_column("clip")
    table.add_column("time")
    table.add_column("memory after the clip", overflow="fold")
    table.add_column("answer")
    for s in result.steps:
        flags = " (truncated)" if s.memory_truncated else ""
        table.add_row(str(s.clip + 1), f"{s.start:.0f}-{s.end:.0f}s", (s.memory_after or "(empty)") + flags, str(s.answer))
    return table


def _run(vm, video: Path, question: str, options, **ask_kw):
    from videomem.loop import Result

    with _progress() as progress:
        task = progress.add_task(f"reading {video.name}", total=None)

        def on_step(record, total):
            progress.update(task, total=total, completed=record.clip + 1)

        try:
            result: Result = vm.ask(video, question, options, on_step=on_step, **ask_kw)
        except KeyboardInterrupt:
            progress.stop()
            _say_error("interrupted: finished clips are saved in the trace; run the same command with --resume to continue")
            raise typer.Exit(130)
    return result


@app.command()
def info(
    video: Annotated[Path, typer.Argument(help="Video file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
):
    """Duration, frame rate, frame count, size, rotation, codec and keyframe spacing of a video."""
    from videomem.video.probe import probe

    vi = probe(video)
    fields = vi.summary()
    fields["keyframes"] = len(vi.keyframe_times)
    if as_json:
        out.print_json(json.dumps(fields))
        return
    table = Table(show_header=False)
    for k, v in fields.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    out.print(table)


@app.command()
def ask(
    video: Annotated[Path, typer.Argument(help="Video file.")],
    question: Annotated[str, typer.Argument(help="The question. Options may follow as --option, or be written in it as (A) ... lines.")],
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="A multiple-choice option (repeat, in order A, B, ...).")] = None,
    trace: Annotated[Optional[Path], typer.Option("--trace", help="Trace JSONL (default: ~/.cache/videomem/runs/<video>-<run key>.jsonl).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last finished clip.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over even if a trace of this run exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    frames_as: FramesAsOpt = None,
    max_new_tokens: MaxNewOpt = None,
    temperature: TempOpt = None,
    clips: ClipsOpt = None,
    clip_seconds: ClipSecOpt = None,
    frames_per_clip: FpcOpt = None,
    fps: FpsOpt = None,
    max_pixels: PixOpt = None,
    decode: DecodeOpt = None,
    prefetch: PrefetchOpt = None,
    memory_tokens: MemOpt = None,
):
    """Answer a question about a video, reading it clip by clip with a bounded memory."""
    from videomem.loop import VideoMem

    cfg = _config(config, locals())
    result = _run(VideoMem(config=cfg), video, question, option or None, trace=trace, resume=resume, fresh=fresh)
    if as_json:
        payload = {
            "answer": result.answer,
            "answer_raw": result.answer_raw,
            "memory": result.memory,
            "provisional_answers": result.provisional_answers,
            "trace": str(result.trace_path),
            "steps": [asdict(s) for s in result.steps],
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        letters = list(LETTERS[: len(result.options or [])])
        chosen = f" ({result.options[letters.index(result.answer)]})" if result.answer and result.answer in letters else ""
        out.print(f"[bold]answer:[/bold] {result.answer if result.answer is not None else '(unreadable)'}{chosen}")
        out.print(f"[bold]provisional answers:[/bold] {' -> '.join(str(a) for a in result.provisional_answers)}")
        out.print(f"[bold]memory:[/bold] {result.memory or '(empty)'}")
        out.print(f"[dim]trace: {result.trace_path}[/dim]")
    if result.answer is None:
        _say_error(f"no answer could be read from the model's output at the last clip (raw output in {result.trace_path})")
        raise typer.Exit(4)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the demo video and trace are written.")] = Path("videomem-demo"),
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    device: DeviceOpt = None,
    max_new_tokens: MaxNewOpt = 256,  # the demo's memory is a few lines; caps an untrained model's ramble
):
    """Make a short synthetic video with a known answer and answer it offline with the default model."""
    from videomem.demo import make_demo_video
    from videomem.loop import VideoMem

    cfg = _config(config, locals())
    item = make_demo_video(workdir)
    out.print(f"[bold]video:[/bold] {item.video} ({item.duration:.0f} s, made by videomem.demo)")
    out.print(f"[bold]question:[/bold] {item.question}")
    for letter, text in zip("ABCDE", item.options):
        out.print(f"  ({letter}) {text}")
    vm = VideoMem(config=cfg)
    result = _run(vm, item.video, item.question, item.options, trace=workdir / "demo-trace.jsonl", fresh=True)
    out.print(_memory_timeline(result))
    verdict = "correct" if result.answer == item.answer else "wrong"
    out.print(f"[bold]answer:[/bold] {result.answer} (expected {item.answer}: {verdict})")
    out.print(f"[bold]provisional answers:[/bold] {' -> '.join(str(a) for a in result.provisional_answers)}")
    out.print(f"[dim]model: {vm.backend.name}; trace: {result.trace_path}[/dim]")


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the videos and annotations.jsonl.")],
    seed: Annotated[int, typer.Option(help="Everything is deterministic given the seed.")] = 0,
    factors: Annotated[str, typer.Option(help="Length factors, comma-separated (video length = base x factor).")] = "1,2,4,8,16",
    videos_per_factor: Annotated[int, typer.Option(help="Videos of each length.")] = 4,
    base_seconds: Annotated[float, typer.Option(help="Base video length in seconds.")] = 240.0,
    fps: Annotated[float, typer.Option(help="Frame rate of the written videos.")] = 2.0,
    size: Annotated[int, typer.Option(help="Frame width and height.")] = 224,
    questions_per_family: Annotated[int, typer.Option(help="Questions of each family per video.")] = 1,
    encode: Annotated[bool, typer.Option("--encode/--no-encode", help="Write mp4 files (off: annotations only).")] = True,
):
    """Write the synthetic long-video benchmark: videos, event logs and questions (docs/synthetic-benchmark.md)."""
    from videomem.synth import synth_command

    try:
        factor_list = tuple(float(f) for f in factors.split(","))
    except ValueError:
        raise VideoMemError(f"--factors must be comma-separated numbers, got {factors!r}") from None
    path = synth_command(
        out_dir, seed=seed, factors=factor_list, videos_per_factor=videos_per_factor, base_seconds=base_seconds,
        fps=fps, size=size, questions_per_family=questions_per_family, encode=encode, log=err.print,
    )
    out.print(f"wrote {path}")


@app.command("eval")
def eval_(
    benchmark: Annotated[str, typer.Argument(help="synthetic, lvbench, mlvu, longvideobench, videomme or egoschema.")],
    root: Annotated[Path, typer.Argument(help="The benchmark's folder, laid out as docs/benchmarks.md says.")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Results, traces and report; rerun with the same folder to resume.")],
    method: Annotated[Optional[list[str]], typer.Option("--method", help="videomem, uniform, oracle, random (repeat; default videomem and uniform).")] = None,
    workers: Annotated[int, typer.Option(help="Items answered in parallel.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the random method (recorded).")] = 0,
    context_tokens: Annotated[Optional[int], typer.Option(help="Model context for the uniform baseline's frame fit (default: from the HF config).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N items (after --offset).")] = None,
    offset: Annotated[int, typer.Option(help="Skip the first N items (with --limit: one slice of a split-up run).")] = 0,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    max_new_tokens: MaxNewOpt = None,
    clips: ClipsOpt = None,
    clip_seconds: ClipSecOpt = None,
    frames_per_clip: FpcOpt = None,
    fps: FpsOpt = None,
    max_pixels: PixOpt = None,
    memory_tokens: MemOpt = None,
):
    """Run methods on a benchmark (results appended per item, resumable) and write the report."""
    from videomem.eval.harness import eval_command

    cfg = _config(config, locals())
    eval_command(
        benchmark, root, run_dir, config=cfg, methods=tuple(method or ("videomem", "uniform")), workers=workers,
        seed=seed, context_tokens=context_tokens, limit=limit, offset=offset,
        log=lambda m: err.print(m, markup=False, highlight=False),
    )


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A `videomem eval` run folder.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where report.md and the plots go (default RUN_DIR/report).")] = None,
):
    """Write the Markdown report and PNG plots of an evaluation run."""
    from videomem.eval.report import write_report

    out.print(f"wrote {write_report(run_dir, out_dir)}")


train_app = typer.Typer(no_args_is_help=True, help="Train VideoMem models (cold-start SFT, then PRPO).")
app.add_typer(train_app, name="train")


@train_app.command("sft")
def train_sft(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    data: Annotated[Optional[str], _flag("sft.data", "--data")] = None,
    output_dir: Annotated[Optional[str], _flag("sft.output_dir", "--output-dir")] = None,
    max_steps: Annotated[Optional[int], _flag("sft.max_steps", "--max-steps")] = None,
    batch_size: Annotated[Optional[int], _flag("sft.batch_size", "--batch-size")] = None,
    grad_accum: Annotated[Optional[int], _flag("sft.grad_accum", "--grad-accum")] = None,
    lr: Annotated[Optional[float], _flag("sft.lr", "--lr")] = None,
    lora: Annotated[Optional[bool], _flag("sft.lora", "--lora/--full")] = None,
    save_steps: Annotated[Optional[int], _flag("sft.save_steps", "--save-steps")] = None,
    seed: Annotated[Optional[int], _flag("sft.seed", "--seed")] = None,
):
    """Supervised cold start on chain-of-memory records (docs/sft.md); runs under `accelerate launch` too."""
    flags = {k: v for k, v in locals().items() if k != "config"}
    overrides = {_FIELDS.get(k, f"sft.{k}"): v for k, v in flags.items()}
    from videomem.train.sft import sft_command

    out.print(f"wrote {sft_command(load_config(config, overrides))}")


@train_app.command("prpo")
def train_prpo(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    max_pixels: PixOpt = None,
    data: Annotated[Optional[str], _flag("prpo.data", "--data")] = None,
    output_dir: Annotated[Optional[str], _flag("prpo.output_dir", "--output-dir")] = None,
    variant: Annotated[Optional[str], _flag("prpo.variant", "--variant")] = None,
    reward: Annotated[Optional[str], _flag("prpo.reward", "--reward")] = None,
    psp: Annotated[Optional[str], _flag("prpo.psp", "--psp")] = None,
    group_size: Annotated[Optional[int], _flag("prpo.group_size", "--group-size")] = None,
    examples_per_step: Annotated[Optional[int], _flag("prpo.examples_per_step", "--examples-per-step")] = None,
    max_steps: Annotated[Optional[int], _flag("prpo.max_steps", "--max-steps")] = None,
    beta: Annotated[Optional[float], _flag("prpo.beta", "--beta")] = None,
    lr: Annotated[Optional[float], _flag("prpo.lr", "--lr")] = None,
    lora: Annotated[Optional[bool], _flag("prpo.lora", "--lora/--full")] = None,
    save_steps: Annotated[Optional[int], _flag("prpo.save_steps", "--save-steps")] = None,
    seed: Annotated[Optional[int], _flag("prpo.seed", "--seed")] = None,
):
    """RL with PRPO (TCR rewards, progressive state propagation) or its variants; runs under `accelerate launch` too."""
    flags = {k: v for k, v in locals().items() if k != "config"}
    overrides = {_FIELDS.get(k, f"prpo.{k}"): v for k, v in flags.items()}
    from videomem.train.prpo import prpo_command

    out.print(f"wrote {prpo_command(load_config(config, overrides))}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    name: Annotated[Optional[str], typer.Option(help="Model name clients ask for (default: --model).")] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
):
    """Serve a local model through an OpenAI-compatible chat-completions API."""
    from videomem.backends import load_backend
    from videomem.serve import run_server

    cfg = _config(config, locals())
    if cfg.model.backend != "hf":
        raise VideoMemError("serve needs a local model (backend hf)")
    run_server(load_backend(cfg.model), host=host, port=port, model_name=name or cfg.model.model)


def main() -> None:
    try:
        app()
    except VideoMemError as e:
        _say_error(str(e))
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
