"""Live progress on stderr: Spark stages through the status tracker, training steps as a bar."""

from __future__ import annotations

import sys
import threading
import time


class SparkProgress:
    """Context manager: polls SparkContext.statusTracker() and shows the running stages' task counts."""

    def __init__(self, spark, label: str, interval: float = 0.5):
        self.tracker = spark.sparkContext.statusTracker()
        self.label, self.interval = label, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.started = time.time()
        self.live = sys.stderr.isatty()
        self.last_line = ""

    def __enter__(self) -> SparkProgress:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        line = f"  {self.label}: done in {time.time() - self.started:.0f} s"
        print(f"\r{line:<100}" if self.live else line, file=sys.stderr, flush=True)

    def _poll(self) -> None:
        last_print = 0.0
        while not self.stop.wait(self.interval):
            stages = [self.tracker.getStageInfo(s) for s in self.tracker.getActiveStageIds()]
            stages = [s for s in stages if s is not None]
            if not stages:
                continue
            done = sum(s.numCompletedTasks for s in stages)
            total = sum(s.numTasks for s in stages)
            line = (f"  {self.label}: {len(stages)} Spark stage(s) running, tasks {done}/{total} "
                    f"{_bar(done / max(total, 1))} {time.time() - self.started:.0f} s")
            if self.live:
                print(f"\r{line:<100}", file=sys.stderr, end="", flush=True)
            elif line != self.last_line and time.time() - last_print > 10:
                print(line, file=sys.stderr, flush=True)
                last_print = time.time()
            self.last_line = line


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def step_bar(label: str, total: int):
    """A progress callback for the training engine: step, loss, tokens/s (and DPO reward accuracy)."""
    live = sys.stderr.isatty()

    def show(record: dict) -> None:
        step = record["step"]
        extra = f"  reward acc {record['reward_accuracy']:.2f}" if "reward_accuracy" in record else \
            f"  gate rejections {record.get('gate_rejections_total', 0)} ({record.get('gate_rejection_rate', 0):.1%} recent)"
        line = (f"  {label}: step {step}/{total} {_bar(step / total)} loss {record['loss']:.4f}  "
                f"{record['tokens_per_s']:,.0f} tok/s{extra}")
        if live:
            print(f"\r{line:<110}", file=sys.stderr, end="\n" if step == total else "", flush=True)
        elif step == total or step % max(total // 10, 1) == 0:
            print(line, file=sys.stderr, flush=True)

    return show
