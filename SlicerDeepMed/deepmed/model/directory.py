"""The model directory written by training and read by inference.

    MODEL_DIR/
      model_card.json        what the model is: application, inputs, labels, preprocessing, network, metrics
      config.yaml            the fully resolved training configuration
      model.safetensors      best weights (by the validation key metric; the last ones without validation)
      plan.json              the training plan (spacing, patch, schedule, ... and why)
      checkpoints/last/      weights.safetensors + state.pt for --resume / --extend
      metrics.csv            one row per epoch
      curves.png             loss and validation metric curves
"""

from __future__ import annotations

from pathlib import Path

from deepmed.model.card import CARD, CARD_FORMAT, WEIGHTS, ModelCard
from deepmed.utils.atomic import atomic_path, write_text_atomic
from deepmed.utils.tables import rows_to_csv

CONFIG = "config.yaml"
__all__ = ["CARD", "CARD_FORMAT", "CONFIG", "WEIGHTS", "ModelCard", "label_colour", "read_card", "write_card"]

#: Colours for labels 1, 2, ... (Slicer's GenericAnatomyColors feel); label 0 is background.
PALETTE = [(128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79), (221, 130, 101),
           (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70)]


def label_colour(index: int) -> list[int]:
    return list(PALETTE[(index - 1) % len(PALETTE)]) if index > 0 else [0, 0, 0]


def write_card(model_dir: Path, card: ModelCard | dict) -> Path:
    """Write the card (a ModelCard, or the document a training builds), checked against the schema."""
    if isinstance(card, dict):
        card = ModelCard.from_dict(card, str(Path(model_dir) / CARD))
    return card.write(model_dir)


def read_card(model_dir: str | Path) -> ModelCard:
    """The card of a finished model directory, checked; one-line errors for missing or foreign directories."""
    return ModelCard.read(model_dir)


def write_metrics_csv(model_dir: Path, history: list[dict]) -> Path:
    return write_text_atomic(Path(model_dir) / "metrics.csv", rows_to_csv(history))


def write_curves(model_dir: Path, history: list[dict], metric_prefixes: tuple[str, ...],
                 key_metric: str) -> Path | None:
    """Loss and validation-metric curves as a PNG (people would rather look at a curve)."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:blue")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_loss.grid(alpha=0.3)
    validated = [h for h in history if key_metric in h]
    for key in sorted({k for h in validated for k in h if k.startswith(tuple(metric_prefixes))}):
        ax_metric.plot([h["epoch"] for h in validated if key in h], [h[key] for h in validated if key in h],
                       marker="o", markersize=3, label=key, linewidth=2.5 if key == key_metric else 1)
    ax_metric.set(title="validation", xlabel="epoch")
    ax_metric.grid(alpha=0.3)
    if validated:
        ax_metric.legend(fontsize=7)
    fig.tight_layout()
    path = Path(model_dir) / "curves.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
