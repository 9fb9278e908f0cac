"""What a run tells its user: a progress bar with ETA, a metrics line every few steps, metrics.csv (every step),
and optionally TensorBoard and Weights & Biases. Only the main process reports.

    step 20/200 | loss 2.314 (ce 2.310, div 0.41) | lr 9.8e-04 | 1520 tok/s | 6.1 samples/s | 0.33 s/step

metrics.csv columns: step, epoch, loss, ce_loss, diversity_loss, alignment_loss, lr, grad_norm, tokens_per_s,
samples_per_s, step_time_s, elapsed_s (a loss the run does not use is empty). On resume the rows after the
checkpoint's step are dropped, so the file always describes the run that the checkpoints continue.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

from videosalmonn.errors import ConfigError
from videosalmonn.training.config import LogConfig

COLUMNS = (
    "step",
    "epoch",
    "loss",
    "ce_loss",
    "diversity_loss",
    "alignment_loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "samples_per_s",
    "step_time_s",
    "elapsed_s",
)
METRICS = "metrics.csv"


class Feedback:
    def __init__(
        self, output_dir: str | Path, cfg: LogConfig, total_steps: int, start_step: int, enabled: bool, run_config: dict
    ):
        self.cfg = cfg
        self.total = total_steps
        self.enabled = enabled
        self.start = time.monotonic()
        self.csv_path = Path(output_dir) / METRICS
        self.bar = self.tb = self.wandb = None
        if not enabled:
            return
        _truncate_after(self.csv_path, start_step)
        if cfg.progress and sys.stderr.isatty():  # a bar only on a terminal; logs get the metric lines
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps,
                initial=start_step,
                desc="train",
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "log.tensorboard: the `tensorboard` package is not installed "
                    "(pip install tensorboard, or use metrics.csv)"
                ) from None
            self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=start_step + 1)
        if cfg.wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError(
                    "log.wandb_project: the `wandb` package is not installed (pip install wandb)"
                ) from None
            self.wandb = wandb.init(
                project=cfg.wandb_project,
                config=run_config,
                dir=str(output_dir),
                resume="allow",
                name=Path(output_dir).name,
            )

    def step(self, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        metrics = {**metrics, "elapsed_s": time.monotonic() - self.start}
        new = not self.csv_path.is_file()
        with self.csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(metrics.get(k)) for k in COLUMNS})
        step = int(metrics["step"])
        if self.tb is not None:
            for k in COLUMNS[2:]:
                if metrics.get(k) is not None:
                    self.tb.add_scalar(f"train/{k}", metrics[k], step)
        if self.wandb is not None:
            self.wandb.log({f"train/{k}": v for k, v in metrics.items() if v is not None}, step=step)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.1e}", refresh=False)
        if step % self.cfg.every == 0 or step == self.total:
            self.say(line(metrics, self.total))

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def line(m: dict[str, float], total: int) -> str:
    loss = f"loss {m['loss']:.4f}"
    parts = [
        f"{name} {m[key]:{form}}"
        for name, key, form in (
            ("ce", "ce_loss", ".4f"),
            ("div", "diversity_loss", ".3f"),
            ("align", "alignment_loss", ".3f"),
        )
        if m.get(key) is not None
    ]
    if m.get("diversity_loss") is not None or m.get("alignment_loss") is not None:
        loss += f" ({', '.join(parts)})"
    return (
        f"step {int(m['step'])}/{total} | {loss} | lr {m['lr']:.2e} | grad {m['grad_norm']:.2f} | "
        f"{m['tokens_per_s']:.0f} tok/s | {m['samples_per_s']:.2f} samples/s | {m['step_time_s']:.2f} s/step"
    )


def read_metrics(output_dir: str | Path) -> list[dict[str, float]]:
    """metrics.csv as a list of rows (floats; empty cells are None)."""
    path = Path(output_dir) / METRICS
    with path.open() as f:
        return [{k: (float(v) if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]


def _fmt(v) -> str:
    if v is None:
        return ""
    return repr(float(v)) if isinstance(v, float) else str(v)


def _truncate_after(path: Path, step: int) -> None:
    """Keep the header and the rows of steps <= `step` (a resumed run rewrites what came after)."""
    if not path.is_file():
        return
    rows = [r for r in csv.DictReader(path.open()) if float(r["step"]) <= step]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue())
