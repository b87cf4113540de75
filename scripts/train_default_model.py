"""Retrain the bundled default model from nothing (issue 4, part 3): one command, 2 CPU cores, about 2 h 40 min.

    python scripts/train_default_model.py --install   # writes runs/default-model/, then replaces videomem/assets/default-model
    python scripts/eval_default_model.py --model runs/default-model/final --metrics runs/default-model/metrics.jsonl
    # rerun the same command to resume an interrupted run (each stage resumes from its latest checkpoint)

What it does (shared/docs/training-notes.md, and docs/training-log.md for what failed before):
1. Data from the synthetic benchmark's generator, dataset seed --data-seed (default 1): video seeds
   data_seed*1_000_003 + factor_index*1000 + v. Seeds 0 (`videomem synth`'s default) and 7 (the held-out evaluation
   set) are refused, so training and evaluation never share a video. Two kinds of records
   (videomem.train.chain_data), all through the one inference prompt builder:
   - question records: the memory after every clip and the provisional answers, for every question of 980 videos at
     1x, 2x, 4x and 8x (4 to 32 clips of 60 s; long videos are few, but teach clip numbers and times up to 32 min);
   - event records: one event, 2 frames (one temporal patch: every video token shows the answer).
2. A randomly initialised tiny Qwen3-VL (text 256 x 4 layers, vision 128 x depth 3; ~6M parameters, 24 MB fp32)
   with a byte-level BPE tokenizer trained here on the built-in corpus plus the question records' text, so colours,
   shapes, words and memory phrases are single tokens (`videomem.models.build_tiny_vlm(extra_corpus=...)`). Its
   reading settings (60 s clips x 16 frames, frames <= 128x128) go into its videomem.yaml, so `videomem ask/eval`
   read videos the way it was trained.
3. Stage 1, perception (--stage1-minutes, 18): event records only. Mixed training from the start left the vision
   tower unused (every memory the same whatever the clip showed; docs/training-log.md, run 3).
4. Copy stage (--copy-minutes, 32): the language model alone on texts that repeat or look up their first half
   (videomem.train.copy_stage). Trained from random weights on the records alone, it never learned to copy, which
   every memory step needs (docs/training-log.md, run 5). Three quarters of its texts are lookups (an option's
   letter found by its text, --copy-lookup-share), half of those laid out as the step prompt lays out its options
   (--copy-prompt-layout): with a quarter, the lookups stayed at chance, and the think block's marks, which are
   built on them, were never learned (runs 4-13); with these, they are (training-log, sessions 8-9: run 14, the
   model shipped before run 17, had this stage in four pieces, 46 minutes in all). Cut to 22 minutes, with the
   text stage cut to 15 + 20, the lookups formed (103/122) but the marks were not learned: no "yes" mark after the
   text stage (11/60) nor after 25 minutes of stage 2 (0/167; run 20, training-log session 11).
5. Text stage (--text-minutes 20, then --marks-minutes 25, a quarter of it short mark texts: --mark-share): the
   memory task's steps without their frames, loss on the
   marks, the memory and the answer, fresh videos every batch (videomem.train.text_stage); its second part keeps
   only a tenth of the steps without a "yes" mark (--keep-without-yes) and weights the marks x2 (--mark-weight):
   without that, "yes" was never predicted (docs/training-log.md, run 8). Its mixed-in copy texts are drawn with the
   copy stage's --copy-lookup-share and --copy-prompt-layout, so the lookups are kept.
6. Stage 2, the memory task, in two parts around the code stage (--stage2-first-minutes 25, --code-minutes 10,
   --minutes 28): the question records in one wording per
   family, each step first naming in a think block everything its clip shows, each event marked yes or no (does the
   question need it), then the memory (facts timed by their clip's start) and the answer (docs/training-log.md,
   runs 5-7); steps whose clip adds evidence x2, code event records x2; 40% of the steps without a "yes" mark
   (--stage2-keep-without-yes): with every step, the marks were unlearned before the lookups were (run 9: 18.8%);
   with a tenth (run 12: 34.4%), the memory gained an entry when nothing was needed; 0.4 and 1.0 after a tenth
   gave 48.4% and 46.9% (runs 17 and 19, session 10).
   The whole target carries the loss (--stage2-loss all), each token once (--memory-weight 1): the memory's tokens x3
   gave run 25 (49.2% on the 128 held-out questions it was chosen on, against 45.3% unweighted, 660 steps from run
   17; 47.1% on 384 it was not chosen on), but with another data order x3 scored 33.6% against 37.5% unweighted
   (runs 24-30, sessions 12-13). Stage 2's length mattered more than any of its settings: 5,400 more steps from run
   25 (lr 3e-4) gave run 33, 69.5% on those 384 (session 14); 5,000 more from run 33 with the near misses' "no"
   marks weighted (--near-miss-weight, 5 then 2; 5 alone turned every count event of the asked colour "no") gave
   run 35, the shipped model, 81.5% (session 15). The loss on
   what the frames decide alone (--stage2-loss names) let the rest of the language model drift until the format broke
   (run 10), and the vision tower alone (--stage2-freeze language) did not learn to name events in the language
   model's format (run 11). docs/training-log.md, "Next".
   The code stage between its parts: the code event records alone. Mixed with the other events (stage 1, stage 2)
   the model wrote one code for every code event (0/12 read, runs 8-14); alone, from run 14's weights (stage 2
   done), the codes were read after 10 minutes (62/100), and the second part of stage 2 made the step format whole
   again (runs 16-17); from stage 1's weights they stayed at chance (after 21 minutes, only the first character was
   read; docs/training-log.md, session 10), and after run 20's weak first part of stage 2 10 minutes taught the
   first character only (98/100, digit 16/100, third 8/100; session 11).
   Each stage: AdamW, lr 6e-4, warm-up then cosine (training-notes); max_steps from the time budget and the expected
   speed; a time guard stops early (checkpoint + export) if steps are slower.
7. Output: <out>/final (HFBackend loads it), <out>/metrics.jsonl,
   <out>/{stage1,copy,text,text-marks,stage2-first,codes}/; --install copies final into videomem/assets/default-model.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import replace
from pathlib import Path

from videomem.config import ClipConfig, load_config

EVAL_SEEDS = (0, 7)  # videomem synth default, held-out evaluation set


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Retrain the bundled default model from scratch on CPU.")
    ap.add_argument("--out", type=Path, default=Path("runs/default-model"), help="output dir (init/, data/, final/)")
    ap.add_argument("--minutes", type=float, default=28.0,
                    help="time budget of stage 2's last part, after the code stage (data and model build extra)")
    ap.add_argument("--stage2-first-minutes", type=float, default=25.0,
                    help="time budget of stage 2's first part, before the code stage")
    ap.add_argument("--sec-per-example", type=float, default=0.17,
                    help="expected stage-2 seconds per example on 2 cores (128x128 frames, the default mix), for max_steps")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="override the derived max_steps (both stages); stages then run to it, without the time guard")
    ap.add_argument("--seed", type=int, default=0, help="weights init and data order seed")
    ap.add_argument("--data-seed", type=int, default=1, help="synthetic dataset seed for training (not 0 or 7)")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0],
                    help="video length factors (x 240 s: 4, 8, 16, 32 clips of 60 s)")
    ap.add_argument("--videos", type=int, nargs="+", default=[400, 400, 120, 60],
                    help="question-record videos per length factor: one count, or one per factor (<= 999); long videos "
                    "are few (their steps are many) but teach clip numbers and times up to the longest length")
    ap.add_argument("--evidence-repeat", type=int, default=2, help="copies of each step whose clip holds evidence")
    ap.add_argument("--multi-yes-repeat", type=int, default=2,
                    help="copies of each stage-2 evidence step marking two or more events yes (the memory writing "
                         "dropped some of them; 4 made it worse: docs/training-log.md, session 11)")
    ap.add_argument("--event-videos", type=int, nargs="+", default=[600, 300, 0, 0],
                    help="videos per length factor whose events become event records (2-frame clips of one event)")
    ap.add_argument("--code-event-repeat", type=int, default=2,
                    help="copies of each code event record in stage 2: after stage 1 colours, shapes and most words are "
                    "read, codes (three separate characters) not at all")
    ap.add_argument("--stage1-minutes", type=float, default=18.0, help="time budget of stage 1 (event records only)")
    ap.add_argument("--stage1-sec-per-example", type=float, default=0.07, help="expected stage-1 speed, for max_steps")
    ap.add_argument("--stage1-batch-size", type=int, default=16)
    ap.add_argument("--code-minutes", type=float, default=10.0,
                    help="time budget of the code stage (code event records alone, before stage 2)")
    ap.add_argument("--copy-minutes", type=float, default=32.0,
                    help="time budget of the copy stage (text only, after stage 1: videomem.train.copy_stage)")
    ap.add_argument("--copy-lookup-share", type=float, default=0.75,
                    help="share of the copy texts that look options up by text (runs 4-13: a quarter, the lookups "
                         "never learned; training-log sessions 8-9: 0.75 teaches the lookup the marks need)")
    ap.add_argument("--copy-prompt-layout", type=float, default=0.5,
                    help="share of the copy stage's option texts laid out as the step prompt (runs 4-13: none; a "
                         "lookup learned in one layout does not work in the other)")
    ap.add_argument("--text-minutes", type=float, default=20.0,
                    help="time budget of the text stage (the memory task's text operations without frames, after the "
                    "copy stage: videomem.train.text_stage)")
    ap.add_argument("--marks-minutes", type=float, default=25.0,
                    help="time budget of the text stage's second part, from the first one's weights, with 'yes' marks "
                    "made common (--keep-without-yes) and the marks weighted --mark-weight times in the loss")
    ap.add_argument("--mark-weight", type=float, default=2.0)
    ap.add_argument("--mark-share", type=float, default=0.25,
                    help="share of the text stage's second part given to short mark texts (text_stage.mark_text)")
    ap.add_argument("--stage2-freeze", nargs="*", choices=["language", "vision"], default=[],
                    help="parts stage 2 keeps fixed (sft.freeze): 'language' leaves the text stage's language model "
                    "as it is and trains the vision tower alone")
    ap.add_argument("--stage2-loss", choices=["names", "all"], default="all",
                    help="stage 2's loss on the question steps: the events named in the think block only, or the "
                    "whole target")
    ap.add_argument("--keep-without-yes", type=float, default=0.1,
                    help="share of the text steps without a 'yes' mark kept in the text stage's second part")
    ap.add_argument("--memory-weight", type=float, default=1.0,
                    help="stage 2: the memory's tokens count this many times in the loss (the think block's names "
                    "and marks, and the answer, once); run 25 used 3 (training-log session 12: not better on "
                    "another seed)")
    ap.add_argument("--near-miss-weight", type=float, default=1.0,
                    help="stage 2: the 'no' marks of events sharing a name with the question (chain_data."
                    "near_miss_marks) count this many times in the loss; run 33 marked 63 of 63 count events of the "
                    "asked colour and another shape 'yes' (docs/training-log.md session 14)")
    ap.add_argument("--stage2-keep-without-yes", type=float, default=0.4,
                    help="share of stage 2's question steps without a 'yes' mark kept (1: all; docs/training-log.md: "
                    "run 12's 0.1 kept the text stage's marks, run 17's 0.4 keeps them and stops memories from "
                    "gaining entries when nothing is needed)")
    ap.add_argument("--stage2-from", type=Path, default=None,
                    help="run stage 2 alone, from this model (its tokenizer must be the one the data was built for)")
    ap.add_argument("--until", choices=["stage1"], default=None,
                    help="stop after this stage (perception alone: probe it with scripts/probe_perception.py)")
    ap.add_argument("--install", action="store_true", help="copy the final model into videomem/assets/default-model")
    ap.add_argument("--arch", default="qwen3_vl", choices=["qwen3_vl", "qwen2_5_vl"])
    ap.add_argument("--text-hidden", type=int, default=256)
    ap.add_argument("--text-layers", type=int, default=4)
    ap.add_argument("--text-heads", type=int, default=4)
    ap.add_argument("--vision-hidden", type=int, default=128)
    ap.add_argument("--vision-depth", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=1500)
    ap.add_argument("--max-pixels", type=int, default=128 * 128, help="per-frame pixel cap (eval must use the same)")
    ap.add_argument("--frames-per-clip", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--save-steps", type=int, default=100)
    a = ap.parse_args(argv)
    if a.data_seed in EVAL_SEEDS:
        ap.error(f"--data-seed {a.data_seed} is an evaluation seed; pick another")
    for name in ("videos", "event_videos"):
        counts = getattr(a, name)
        counts = counts * len(a.factors) if len(counts) == 1 else counts
        if len(counts) != len(a.factors) or not all(0 <= n <= 999 for n in counts):
            ap.error(f"--{name.replace('_', '-')}: one count or one per factor, each 0..999 "
                     "(video seeds data_seed*1000003 + factor_index*1000 + v)")
        setattr(a, name, counts)
    return a


def domain_corpus(records: list[dict], n: int = 4000) -> list[str]:
    """Text for the tokenizer: the questions, options and target memories of the first n records (question and
    perception records alike), so the synthetic vocabulary (colours, shapes, words, memory phrases) merges into
    single tokens."""
    lines = []
    for rec in records[:n]:
        lines.append(rec["question"] + " " + " ".join(rec["options"] or []))
        lines.extend(f"<memory>{s['memory']}</memory><answer>{s['answer']}</answer>" for s in rec["steps"])
    return lines


def write_reading_defaults(a, model_dir: Path) -> None:
    """The clip plan and frame size the model is trained on, as its READING_DEFAULTS_FILE: `videomem ask/eval` with
    this model read videos the same way unless told otherwise (export copies it into <out>/final)."""
    from videomem.config import READING_DEFAULTS_FILE

    (model_dir / READING_DEFAULTS_FILE).write_text(
        "# How this model was trained to read videos (scripts/train_default_model.py); flags and --config override it.\n"
        f"clips:\n  clip_seconds: 60\n  frames_per_clip: {a.frames_per_clip}\n"
        f"  max_pixels: {a.max_pixels}\n  min_pixels: 1024\n"
    )


def build_model(a, init: Path, corpus: list[str]) -> Path:
    from videomem.models import build_tiny_vlm

    if (init / "config.json").is_file():
        print(f"[model] reusing {init}")
        return init
    t = time.perf_counter()
    build_tiny_vlm(
        a.arch, init, text_hidden=a.text_hidden, text_layers=a.text_layers, text_heads=a.text_heads,
        text_kv_heads=max(1, a.text_heads // 2), vision_hidden=a.vision_hidden, vision_depth=a.vision_depth,
        vision_heads=max(1, a.vision_hidden // 64), vocab_size=a.vocab, min_pixels=1024, max_pixels=a.max_pixels,
        max_positions=32768, seed=a.seed, extra_corpus=corpus,
    )
    write_reading_defaults(a, init)
    size = sum(f.stat().st_size for f in init.iterdir())
    print(f"[model] built {a.arch} in {init} ({size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s")
    return init


def specs_for(a, counts: list[int]) -> list:
    """dataset_specs' videos (seed data_seed, factor index i, video v): the first counts[i] of every factor."""
    from videomem.synth.generate import dataset_specs

    every = dataset_specs(a.data_seed, tuple(a.factors), max(counts))
    return [s for i, n in enumerate(counts) for s in every[i * max(counts) : i * max(counts) + n]]


def build_data(a, clip_cfg: ClipConfig, path: Path) -> Path:
    """Stage 1's data and the tokenizer's corpus, into one JSONL (written once, reused on resume): question records
    for the first --videos videos per factor in drawn wordings (Style.draw: the corpus sees every memory phrase),
    then event records for the first --event-videos."""
    from videomem.train.chain_data import build_synthetic, event_records

    if path.is_file():
        print(f"[data] reusing {path}")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    specs, event_specs = specs_for(a, a.videos), specs_for(a, a.event_videos)
    seeds = [s.seed for s in specs + event_specs]
    n = n_event = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for rec in build_synthetic(specs, clip_cfg):
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            n += 1
        for spec in event_specs:
            for rec in event_records(spec):
                f.write(json.dumps(rec, sort_keys=True) + "\n")
                n_event += 1
    tmp.rename(path)
    print(f"[data] {n} question records from {len(specs)} videos; {n_event} event records from {len(event_specs)} "
          f"videos (video seeds {min(seeds)}..{max(seeds)}) -> {path}")
    return path


def stage2_records(a, clip_cfg: ClipConfig) -> list[dict]:
    """The memory task as the model learns it: the question records' videos again, in one wording per family
    (Style.plain), each step first naming everything its clip shows, each event marked yes or no (the think block:
    perception, then whether the question needs it), facts timed by their clip's start (stated in the prompt)."""
    from videomem.train.chain_data import build_synthetic

    records = list(build_synthetic(specs_for(a, a.videos), clip_cfg, plain=True, observe=True, mark=True, clip_times=True))
    guessed = sum(not r["final_correct"] for r in records)
    print(f"[data] stage 2: {len(records)} question records, {guessed} ending on a guess (evidence not sampled)")
    return records


def main(argv=None) -> None:
    a = parse_args(argv)
    from videomem.train.chain_data import read_records
    from videomem.train.text_stage import frame_spans

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    clip_cfg = ClipConfig(clip_seconds=60, frames_per_clip=a.frames_per_clip, max_pixels=a.max_pixels, min_pixels=1024)
    records = read_records(build_data(a, clip_cfg, out / "data" / "chain-train.jsonl"))
    code_events = [r for r in records if is_code_event(r)]
    texted = None if a.stage2_from else stages_before_stage2(a, records, clip_cfg)
    if texted is None and a.stage2_from is None:  # --until stage1
        return
    # Stage 2, the memory task (evidence steps repeated), with code events mixed in, so the codes stay read.
    # --stage2-loss names: the loss on what only the frames tell (the events named in the think block, where it ends),
    # an attempt to leave the marks, memory and answer to the text stage (runs 9-11 in docs/training-log.md).
    examples = training_examples({"question": stage2_records(a, clip_cfg), "code event": code_events},
                                 {"question": 1, "code event": a.code_event_repeat}, evidence_repeat=a.evidence_repeat,
                                 multi_yes_repeat=a.multi_yes_repeat, keep_without_yes=a.stage2_keep_without_yes,
                                 seed=a.seed)  # fmt: skip
    if a.stage2_loss == "names":
        examples = [replace(ex, loss_spans=tuple(frame_spans(ex.step))) if ex.step.observed else ex for ex in examples]
    examples = [replace(ex, weighted_spans=stage2_weights(a, ex.step)) if ex.step.observed else ex for ex in examples]
    freeze = tuple(a.stage2_freeze)
    read = a.stage2_from
    if read is None:
        # Stage 2's first part, then the codes alone, then stage 2 again: the order the codes were learned in
        # (run 14's stage 2, codes, stage 2 = runs 16-17); from stage 1's weights they stayed at chance (session 10).
        read = run_stage(a, "stage 2, first part", texted, out / "stage2-first", examples, a.stage2_first_minutes,
                         a.sec_per_example, a.batch_size, freeze=freeze)  # fmt: skip
        read = event_stage(a, "codes", read, out / "codes", code_events, a.code_minutes)
    final = run_stage(a, "stage 2", read, out, examples, a.minutes, a.sec_per_example, a.batch_size, freeze=freeze)
    size = sum(f.stat().st_size for f in final.iterdir())
    print(f"[done] {final} ({size / 1e6:.1f} MB) in {(time.time() - t0) / 60:.1f} min")
    if a.install:
        install(final)


def stages_before_stage2(a, records: list[dict], clip_cfg: ClipConfig) -> Path | None:
    """The model, then stage 1, the copy stage and the text stage, each skipped when its final model exists: the
    weights stage 2 starts from (None with --until stage1)."""
    from videomem.train.copy_stage import train_copy
    from videomem.train.text_stage import train_text_stage

    out = a.out
    init = build_model(a, out / "init", domain_corpus(records))
    events = [r for r in records if r["family"] == "event"]
    # Stage 1, perception: event records only (2 frames of one event: every video token shows the answer).
    stage1 = event_stage(a, "stage 1", init, out / "stage1", events, a.stage1_minutes)
    if a.until == "stage1":
        print(f"[done] {stage1}, stopped after stage 1 (--until stage1)")
        return None
    # Copying: the language model alone, on texts that repeat themselves (induction heads; videomem.train.copy_stage).
    stamp = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)
    mix = {"lookup_share": a.copy_lookup_share, "prompt_layout": a.copy_prompt_layout}  # the text stage keeps it
    copied = train_copy(stage1, out / "copy", minutes=a.copy_minutes, seed=a.seed, copy_mix=mix, log=stamp)
    # The step's text operations (marks, memory, answer) on fresh steps without frames (videomem.train.text_stage).
    texted = train_text_stage(copied, out / "text", minutes=a.text_minutes, clip_config=clip_cfg, seed=a.seed,
                              copy_mix=mix, log=stamp)  # fmt: skip
    return train_text_stage(texted, out / "text-marks", minutes=a.marks_minutes, clip_config=clip_cfg,
                            mark_weight=a.mark_weight, keep_without_yes=a.keep_without_yes, mark_share=a.mark_share,
                            seed=a.seed + 1, copy_mix=mix, log=stamp)  # fmt: skip


def training_examples(by_kind: dict, repeats: dict, evidence_repeat: int = 1, multi_yes_repeat: int | None = None,
                      keep_without_yes: float = 1.0, seed: int = 0) -> list:  # fmt: skip
    """The stage's examples: each kind's steps `repeats[kind]` times; question steps whose clip adds something to
    the memory ("evidence steps") `evidence_repeat` times instead, and those marking two or more events "yes"
    `multi_yes_repeat` times (default: evidence_repeat). keep_without_yes: the share of question steps
    whose think block marks no event "yes" that are kept (drawn with `seed`), as in the text stage."""
    from videomem.train.sft import examples_from_records

    rng = random.Random(f"videomem-stage2-keep/{seed}")
    examples, counts = [], []
    for kind, times in repeats.items():
        n = n_evidence = n_multi = 0
        for ex in examples_from_records(by_kind[kind]):
            k = times
            no_yes = kind == "question" and ex.step.observed and ": yes" not in ex.step.observed
            if no_yes and rng.random() >= keep_without_yes:
                continue
            if kind == "question":
                # the clip showed something relevant iff the memory changed (at clip 1: it is not a "not seen" phrase)
                after = ex.step.memory
                before = ex.step.memory_before
                new_fact = after != before if before else not any(p in after for p in ("seen yet", "Nothing yet"))
                k, n_evidence = (evidence_repeat, n_evidence + 1) if new_fact else (times, n_evidence)
                if new_fact and ex.step.observed and ex.step.observed.count(": yes") >= 2 and multi_yes_repeat:
                    k, n_multi = multi_yes_repeat, n_multi + 1
            examples.extend([ex] * k)
            n += 1
        detail = (f" ({n_evidence} evidence steps x{evidence_repeat}, {n_multi} of them marking 2+ events yes "
                  f"x{multi_yes_repeat or evidence_repeat})")  # fmt: skip
        counts.append(f"{n} {kind} steps x{times}" + (detail if kind == "question" else ""))
    print(f"[data] {len(examples)} training steps: " + ", ".join(counts))
    return examples


def stage2_weights(a, step) -> tuple[tuple[int, int, float], ...]:
    """A question step's weighted spans (batching.SFTExample.weighted_spans): its memory's text and closing tag
    --memory-weight times, its near misses' "no" marks --near-miss-weight times (weight 1: no span)."""
    from videomem.train.chain_data import near_miss_marks

    target = step.target
    start = target.index("<memory>") + len("<memory>")
    spans = [(start, target.index("</memory>") + len("</memory>"), a.memory_weight)] if a.memory_weight != 1 else []
    if a.near_miss_weight != 1:
        spans += [(s, e, a.near_miss_weight) for s, e in near_miss_marks(step)]
    return tuple(spans)


def is_code_event(record: dict) -> bool:
    """Whether `record` is an event record (chain_data.event_records) of a code event."""
    return record["family"] == "event" and "code " in record["steps"][0]["memory"]


def event_stage(a, name: str, model: Path, out: Path, records: list[dict], minutes: float) -> Path:
    """A perception stage: `records` (event records) once each, at stage 1's speed and batch size."""
    examples = training_examples({name: records}, {name: 1})
    return run_stage(a, name, model, out, examples, minutes, a.stage1_sec_per_example, a.stage1_batch_size)


def run_stage(a, name: str, model: Path, out: Path, examples: list, minutes: float, sec_per_example: float,
              batch_size: int, freeze: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """train_sft with a time budget: max_steps from the expected speed; a guard stops (checkpoint + export) early if
    steps are slower (not with an explicit --max-steps). out/final; if it exists, the stage is done and is skipped.
    Rerunning resumes from the stage's latest checkpoint."""
    from videomem.train.sft import train_sft

    if (out / "final" / "config.json").is_file():
        print(f"[{name}] done: {out / 'final'}")
        return out / "final"

    max_steps = a.max_steps or max(10, int(minutes * 60 / (sec_per_example * batch_size)))
    cfg = load_config(None, {
        "clips.clip_seconds": 60, "clips.frames_per_clip": a.frames_per_clip,
        "clips.max_pixels": a.max_pixels, "clips.min_pixels": 1024,
        "memory.max_tokens": 1024,
        "model.model": str(model.resolve()),
        "sft.output_dir": str(out), "sft.max_steps": max_steps, "sft.batch_size": batch_size,
        "sft.lr": a.lr, "sft.warmup_steps": a.warmup, "sft.lr_scheduler": "cosine",
        "sft.save_steps": a.save_steps, "sft.seed": a.seed, "sft.resume": True, "sft.freeze": list(freeze),
    })  # fmt: skip
    source = "--max-steps, no time guard" if a.max_steps else f"budget {minutes} min at ~{sec_per_example} s/example"
    print(f"[{name}] max_steps {max_steps} ({source}), batch {batch_size}, lr {a.lr}, warm-up {a.warmup}, frames <= "
          f"{a.max_pixels} px")  # fmt: skip
    # an explicit --max-steps is a number of steps to run, not a budget: no guard (run 33's first start, 5,400 steps,
    # would have stopped at 28 minutes)
    deadline = float("inf") if a.max_steps else time.time() + minutes * 60
    step_re = re.compile(r"^step (\d+)/")

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
        m = step_re.match(msg)
        # time guard: make this the last step (train_sft re-reads sft.max_steps each step: checkpoint + export)
        if m and time.time() > deadline and int(m.group(1)) < cfg.sft.max_steps:
            cfg.sft.max_steps = int(m.group(1))
            print(f"[{name}] time budget spent: stopping at step {cfg.sft.max_steps}", flush=True)

    return train_sft(cfg, examples, log=log)


def install(final: Path) -> None:
    """Replace the bundled model (videomem/assets/default-model) with `final`."""
    import shutil

    from videomem.config import BUNDLED_MODEL_DIR

    shutil.rmtree(BUNDLED_MODEL_DIR, ignore_errors=True)
    shutil.copytree(final, BUNDLED_MODEL_DIR)
    print(f"[install] {final} -> {BUNDLED_MODEL_DIR}")


if __name__ == "__main__":
    main()
