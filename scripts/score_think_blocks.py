"""Where a model's memory steps go wrong on a synthetic evaluation run: perception (the events named in the think
block), the marks, or the memory.

    python scripts/score_think_blocks.py runs/default-eval-v8/eval-1x-v9 runs/default-eval-v8/synth-1x
    python scripts/score_think_blocks.py runs/default-eval-v10/eval-1x-v14 runs/default-eval-v10/synth-1x --show 10

For every step in the run's traces (`videomem eval synthetic ... --method videomem`) it rebuilds the target the
training data would have for that step (videomem.train.chain_data.chain_for_question on the same clips and sample
times, observe + mark) and compares, per question family: events named exactly (of the events the frames show),
marks right ("yes" and "no" apart; a mark counts only on an event named right, so a misnamed event counts as a
wrong mark: the next column, events the question does not need that are named right but marked "yes", is the
marks' own error), the whole memory, and the whole memory on the steps whose think block is exactly right and whose
memory before was right (the memory writing alone, perception, marks and earlier steps aside). Two more tables: the
memory writing on those steps without the closing answer line (the body), by clip (the first, or later) and by
whether the think block marks any event "yes" (written right, changed wrongly: an entry invented, dropped or
miscopied, or kept when it should have changed); the last step's memory body against the final answer; and, per
question, why the first step whose memory body is wrong went wrong (the writing, or the think block's names or marks).
Nothing about the model is assumed beyond the format its training taught.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from videomem.synth.scene import SynthSpec
from videomem.train.chain_data import _synth_video, chain_for_question, seen_per_clip
from videomem.video.plan import ClipSpec

THINK = re.compile(r"<think>(.*?)</think>", re.S)


def items(observed: str) -> dict[str, Counter]:
    """{"name": Counter(mark)} of a think block's text."""
    marks: dict[str, Counter] = defaultdict(Counter)
    for item in observed.split("; ") if observed.strip() not in ("", "nothing") else []:
        name, _, mark = item.rpartition(": ")
        marks[name.strip()][mark.strip()] += 1
    return marks


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run directory of `videomem eval` (traces/videomem/*.jsonl)")
    ap.add_argument("dataset", type=Path, help="the synthetic dataset directory it evaluated (annotations.jsonl)")
    ap.add_argument(
        "--show",
        type=int,
        default=0,
        help="print up to this many steps whose think block and memory before are right but whose "
        "memory after is not (the memory writing's own mistakes)",
    )
    a = ap.parse_args(argv)
    shown = 0
    annotations = {Path(r["video"]).name: r for r in map(json.loads, (a.dataset / "annotations.jsonl").open())}
    keys = ("steps", "named", "shown", "yes", "yes total", "no", "no total", "memory", "think right", "memory given",
            "false yes", "no named")
    counts: dict[str, Counter] = defaultdict(Counter)
    writing: Counter = Counter()  # (clip, marks, outcome) on steps with the think block and memory before right
    finals: Counter = Counter()  # (last memory body right, final answer right)
    first_wrong: Counter = Counter()  # per question: why the first step whose memory body is wrong went wrong
    for path in sorted(glob.glob(str(a.run / "traces" / "videomem" / "*.jsonl"))):
        lines = [json.loads(line) for line in open(path)]
        head = next(r for r in lines if r["type"] == "run")
        steps = [r for r in lines if r["type"] == "step"]
        ann = annotations[Path(head["video"]["path"]).name]
        question = next(
            q for q in ann["questions"] if q["question"] == head["question"] and q["options"] == head["options"]
        )
        video = _synth_video(SynthSpec(**ann["spec"]))
        clips = [ClipSpec(s["clip"], s["start"], s["end"], tuple(s["timestamps"])) for s in steps]
        truth = chain_for_question(video, question, clips, random.Random(0), seen=seen_per_clip(video, clips),
                                   plain=True, observe=True, mark=True, clip_times=True)  # fmt: skip
        c = counts[question["family"]]
        for step, want, before in zip(steps, truth, [""] + [t["memory"] for t in truth]):
            m = THINK.search(step["raw_output"] or "")
            got = items(m.group(1)) if m else {}
            wanted = items(want["observed"])
            c["steps"] += 1
            memory_right = (step["memory_after"] or "").strip() == want["memory"].strip()
            c["memory"] += memory_right
            for name, marks in wanted.items():
                c["shown"] += sum(marks.values())
                named = got.get(name, Counter())
                c["named"] += min(sum(marks.values()), sum(named.values()))
                for mark, n in marks.items():
                    c[f"{mark} total"] += n
                    c[mark] += min(n, named[mark])
                if marks["no"] and named:  # an event named right that the question does not need: marked "yes"?
                    c["no named"] += min(marks["no"], sum(named.values()))
                    c["false yes"] += min(marks["no"], named["yes"])
            if got == wanted and body(step["memory_before"]) == body(before):
                after = body(step["memory_after"])
                outcome = "right" if after == body(want["memory"]) else "changed" if after != body(before) else "kept"
                clip = "first clip" if step is steps[0] else "later clips"
                writing[(clip, "some yes" if ": yes" in want["observed"] else "no yes", outcome)] += 1
            if got == wanted and (step["memory_before"] or "").strip() == before.strip():
                c["think right"] += 1
                c["memory given"] += memory_right
                if not memory_right and shown < a.show:
                    shown += 1
                    print(f"{question['family']}: {question['question']} {question['options']}\n"
                          f"  think:  {want['observed']}\n  before: {before!r}\n  want:   {want['memory']!r}\n"
                          f"  got:    {step['memory_after']!r}")  # fmt: skip
        first_wrong[first_wrong_cause(steps, truth)] += 1
        final = next(r for r in lines if r["type"] == "final")
        last_right = body(steps[-1]["memory_after"]) == body(truth[-1]["memory"])
        finals[(last_right, final["answer"] == question["answer"])] += 1
    print(
        "| family | steps | events named | yes marks | no marks | not needed, named right, marked yes | memory exact "
        "| memory exact, given think block and memory before |"
    )
    print("|---|---|---|---|---|---|---|---|")
    total: Counter = Counter()
    for family, c in sorted(counts.items()) + [("all", total)]:
        if family != "all":
            total.update(c)
        c = {k: c[k] for k in keys}
        print(f"| {family} | {c['steps']} | {c['named']}/{c['shown']} | {c['yes']}/{c['yes total']} "
              f"| {c['no']}/{c['no total']} | {c['false yes']}/{c['no named']} | {c['memory']} | {c['memory given']}/{c['think right']} |")  # fmt: skip
    print("\n| memory body written (think block and memory before right) | right | changed wrongly | kept wrongly |")
    print("|---|---|---|---|")
    for clip in ("first clip", "later clips"):
        for marks in ("some yes", "no yes"):
            n = [writing[(clip, marks, o)] for o in ("right", "changed", "kept")]
            print(f"| {clip}, {marks} | {n[0]}/{sum(n)} | {n[1]} | {n[2]} |")
    print("\n| last memory body | final answer right | wrong |\n|---|---|---|")
    for right in (True, False):
        print(f"| {'right' if right else 'wrong'} | {finals[(right, True)]} | {finals[(right, False)]} |")
    print("\n| first step whose memory body is wrong | questions |\n|---|---|")
    for cause in CAUSES:
        print(f"| {cause} | {first_wrong[cause]} |")


CAUSES = (
    "none (every body right)",
    "writing: think block right",
    "writing: think block wrong, but the same events marked yes",
    "perception: a needed event misnamed",
    "marks: a needed event named but marked no",
    "an extra yes (a misnamed event or a false mark)",
)


def first_wrong_cause(steps: list[dict], truth: list[dict]) -> str:
    """Why the first step whose memory body differs from the target's went wrong: the writing (its think block marks
    the same events "yes" as the target's, named alike), or the think block (a needed event misnamed, or named but
    marked "no", or an event marked "yes" that is not needed)."""
    for step, want in zip(steps, truth):
        if body(step["memory_after"]) == body(want["memory"]):
            continue
        m = THINK.search(step["raw_output"] or "")
        got, wanted = (items(m.group(1)) if m else {}), items(want["observed"])
        if got == wanted:
            return CAUSES[1]
        got_yes, wanted_yes = ({n for n, c in x.items() if c["yes"]} for x in (got, wanted))
        if got_yes == wanted_yes:
            return CAUSES[2]
        missed = wanted_yes - got_yes
        if missed:
            return CAUSES[3] if any(n not in got for n in missed) else CAUSES[4]
        return CAUSES[5]
    return CAUSES[0]


def body(memory: str | None) -> str:
    """The memory without its closing answer line ("so far: ...", the plain wording's conclusion)."""
    return "\n".join(line for line in (memory or "").strip().splitlines() if not line.startswith("so far:"))


if __name__ == "__main__":
    main()
