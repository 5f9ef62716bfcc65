"""Loss records of a run: OUT/losses.json (kept across resumed runs) and PNG loss curves."""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Dict, List


class Logbook:
    def __init__(self, path: str, enabled: bool = True):
        self.path = path
        self.enabled = enabled
        self.records: List[Dict] = []
        self.run = time.strftime("%Y%m%d-%H%M%S")
        if enabled and os.path.isfile(path):
            try:
                with open(path) as f:
                    self.records = json.load(f).get("records", [])
            except (OSError, ValueError):
                self.records = []  # a damaged log must not stop training

    def add(self, record: Dict) -> None:
        if self.enabled:
            self.records.append(dict(record, run=self.run))

    def flush(self) -> None:
        if not self.enabled:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".losses-", dir=folder)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the log is an ordinary file
        with os.fdopen(fd, "w") as f:
            json.dump({"records": self.records}, f)
        os.replace(tmp, self.path)

    def plot(self, folder: str) -> List[str]:
        """train-<stage>.png per stage: loss against step (runs concatenated), smoothed."""
        if not self.enabled or not self.records:
            return []
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            # A GPU machine without matplotlib: the curves are drawn later from losses.json
            # (python3 training/train_lib/logbook.py OUT/losses.json); training goes on.
            if not getattr(self, "_warned", False):
                print("logbook: matplotlib missing, no PNG curves now", flush=True)
                self._warned = True
            return []

        written = []
        for stage in dict.fromkeys(r["stage"] for r in self.records):
            rows = [r for r in self.records if r["stage"] == stage]
            # Steps restart at each resumed run: lay runs end to end.
            xs, ys, offset, last_run, last_step = [], [], 0, None, 0
            for r in rows:
                if r["run"] != last_run and last_run is not None:
                    offset += last_step
                last_run, last_step = r["run"], r["step"]
                xs.append(offset + r["step"])
                # The unweighted loss where a subject-weighted run logged it ("mse"), so the
                # curve continues the earlier, unweighted runs' on the same scale.
                ys.append(r.get("mse", r["loss"]))
            fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
            ax.plot(xs, ys, lw=0.6, alpha=0.4, color="tab:blue", label="loss")
            k = max(1, len(ys) // 50)
            if k > 1:
                smooth = [sum(ys[max(0, i - k):i + 1]) / len(ys[max(0, i - k):i + 1])
                          for i in range(len(ys))]
                ax.plot(xs, smooth, lw=1.5, color="tab:blue", label=f"mean of {k + 1}")
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.set_title(f"stage {stage}")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", fontsize=8)
            fig.tight_layout()
            path = os.path.join(folder, f"train-{stage}.png")
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
        return written


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python3 training/train_lib/logbook.py OUT/losses.json  (writes the PNGs)")
    book = Logbook(sys.argv[1])
    for written in book.plot(os.path.dirname(os.path.abspath(sys.argv[1]))):
        print(written)
