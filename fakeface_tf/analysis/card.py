"""MODEL_CARD.md from what sits beside a model: config, preprocessing summary, metrics,
evaluations, threshold, "uncertain" band, robustness sweep and fairness report.

Every source is optional and read defensively: a missing or unreadable file becomes a line
saying so, never an error, so a card can be written at any stage of a model's life.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import yaml
from scipy.stats import binomtest

from fakeface_tf.analysis import fairness_indist_output, learning_curve, robustness
from fakeface_tf.analysis.card_verdicts import band_section, calibration_section, threshold_section
from fakeface_tf.analysis.evaluate import EVAL_PREFIX
from fakeface_tf.analysis.generalisation import generalisation_section
from fakeface_tf.analysis.fairness_output import NO_FLAGS, REPORT_DIR, REPORT_FILE
from fakeface_tf.core.config import portable_path, records_dir
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import CARD_FILE, METRICS_FILE, RunFolder
from fakeface_tf.core.files import read_json_object
from fakeface_tf.core.text import format_value, markdown_table
from fakeface_tf.data.face_cut import describe_view
from fakeface_tf.data.records import SUMMARY_FILE
from fakeface_tf.models import artifacts, model_version
from fakeface_tf.training import tracking

CARD = CARD_FILE
EVAL_COLUMNS = ("accuracy", "accuracy_real", "accuracy_fake", "precision", "recall", "f1",
                "roc_auc", "average_precision")
FAIRNESS_COLUMNS = ("attribute", "group", "n", "n_no_face", "fpr", "fpr_lo", "fpr_hi", "accuracy")


def _records_dir(config) -> Path | None:
    path = records_dir(config.data.path)
    return path if path.is_dir() else None


def _architecture(loaded) -> str:
    if loaded.config is None:
        return "- Architecture: unknown (no config.yaml)"
    line = f"- Architecture: `{loaded.config.model.name}`"
    members = artifacts.member_prefixes(loaded.keras_model) if loaded.keras_model is not None else [""]
    if len(members) > 1:
        line += (f", an ensemble of {len(members)} copies trained with different seeds "
                 "(`fakeface ensemble`); its logit is the mean of theirs")
    model = loaded.config.model
    if model.name == "faceres":
        line += (": the FaceRes MobileNet-v1 (224x224, pre-trained for face identification on "
                 f"VGGFace2), {_trained_blocks(model.trainable_blocks)}, a linear head on the "
                 f"mean and spatial standard deviation of blocks {model.feature_blocks}")
    return line


def _trained_blocks(blocks: int) -> str:
    """What `model.trainable_blocks` (0..14) trains, in words: 0 frozen, 14 the stem too."""
    if blocks == 0:
        return "all 13 blocks frozen (only the head trained)"
    if blocks >= 14:
        return "all 13 blocks and the stem fine-tuned"
    return f"its last {blocks} of 13 blocks fine-tuned"


def _provenance(root: Path, env: dict) -> str:
    """Wall time, the records' content hash and the git commit behind the model, in a line."""
    metrics = read_json_object(RunFolder(root).metrics) or {}
    git, data = env.get("git") or {}, env.get("data") or {}
    seconds = metrics.get("train_seconds")
    dirty = {True: " (with uncommitted changes)", False: ""}.get(git.get("dirty"), "")
    commit = f"git commit {git.get('commit') or 'not recorded'}{dirty}."
    if not data:  # a run from before wall time covered everything and records were hashed
        return (f"Training time {'not recorded' if seconds is None else f'{float(seconds):.0f} s'} "
                f"as recorded then; records' content hash not recorded; {commit}")
    return (f"Training wall time {'?' if seconds is None else round(float(seconds))} s "
            f"(input pipeline, frozen pass and epochs); records {data.get('path', '?')}, "
            f"content hash {data.get('hash') or '?'}; {commit}")


def _licences(loaded) -> str:
    """Where the weights and the training data come from, and on what terms."""
    # Imported here: faceres loads TensorFlow, and `fakeface card --help` must not
    # (tests/cli/test_cli.py); the card itself has loaded the model by now.
    from fakeface_tf.models.faceres import LICENSE_NOTE

    lines = ["## Licences",
             "- Training data (the sample): FFHQ real faces (CC BY-NC-SA 4.0, NVIDIA; each image "
             "also under its Flickr licence), StyleGAN/StyleGAN2 fakes from repositories that state "
             "no licence; fairness faces from UTKFace (non-commercial research only). See "
             "`../shared/data/SOURCES.md`. Use the model for non-commercial research."]
    if loaded.config is not None and loaded.config.model.name == "faceres":
        lines.append(f"- {LICENSE_NOTE}")
    return "\n".join(lines)


def _learning_curve(root: Path) -> str:
    """What more training faces buy, when `fakeface learning-curve` wrote its table here."""
    file = root / learning_curve.TABLE_FILE
    if not file.is_file():
        return ""
    try:
        frame = pd.read_csv(file)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return f"## Learning curve\n`{file.name}` unreadable: {exc}"
    columns = [c for c in ("train_fraction", "train_faces", "accuracy", "roc_auc", "threshold")
               if c in frame]
    return "\n".join([
        "## Learning curve",
        "The same recipe trained on nested hash-chosen shares of the training split "
        "(`data.train_fraction`), each scored on the same test split at its own "
        "validation-picked threshold. The full 140k set is the documented path to more data.",
        "", markdown_table(columns, frame[columns].itertuples(index=False)), "",
        f"![learning_curve]({learning_curve.FIGURE_FILE})"
        if (root / learning_curve.FIGURE_FILE).is_file() else ""])


def _header(loaded) -> str:
    params = loaded.keras_model.count_params() if loaded.keras_model is not None else None
    lines = [
        f"# Model card: {loaded.root.name}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `fakeface card` from the files in this folder.",
        "",
        "## Model",
        f"- File: `{loaded.path.relative_to(loaded.root) if loaded.path.is_relative_to(loaded.root) else portable_path(loaded.path)}`",
        _architecture(loaded),
        f"- Parameters: {params:,}" if params is not None else "- Parameters: unknown (SavedModel only)",
        f"- Input: {loaded.image_size}x{loaded.image_size} {'gray' if loaded.channels == 1 else 'RGB'} "
        f"{describe_view(loaded.face_options)}, pixel values 0-255",
        "- Output: P(fake), the probability that the face was made by a GAN (StyleGAN family)",
        "",
        "**Intended use:** research and education on telling real face photographs from "
        "StyleGAN-generated faces, with the verdict explained. **Not for:** decisions about "
        "people, content moderation without human review, or images from other generators "
        "(diffusion models, face swaps) on which it has not been tested.",
    ]
    return "\n".join(lines)


def _data(loaded) -> str:
    lines = ["## Data"]
    if loaded.config is None:
        return "\n".join(lines + ["No config.yaml beside the model: the training data is unknown."])
    records = _records_dir(loaded.config)
    if records is None:
        return "\n".join(lines + [f"Training records `{loaded.config.data.path}` are not on this machine."])
    lines.append(f"TFRecords of the model's input, one a face: `{portable_path(records)}`.")
    summary = read_json_object(records / SUMMARY_FILE)
    if summary and isinstance(summary.get("counts"), dict):
        rows = []
        for split, by_label in summary["counts"].items():
            for label, by_status in sorted(by_label.items()):
                ok = by_status.get("ok", 0)
                rows.append((split, label, ok, sum(by_status.values()) - ok))
        lines += ["", markdown_table(("split", "label", "faces", "files without a usable face"), rows)]
        if summary.get("status"):
            lines.append("\nFiles by status: " + ", ".join(f"{k} {v}" for k, v in summary["status"].items()))
        lines += [f"\n> warning: {w}" for w in summary.get("warnings", [])]
        source = summary.get("settings", {}).get("src")
        if source:
            lines.append(f"\nSource images: `{portable_path(source)}` ({summary['settings'].get('layout', '')}).")
    else:
        lines.append(f"\nNo {SUMMARY_FILE} beside the records: counts unavailable.")
    return "\n".join(lines)


def _preprocessing(loaded) -> str:
    options = loaded.face_options
    records = _records_dir(loaded.config) if loaded.config else None
    summary = read_json_object(records / SUMMARY_FILE) if records else None
    face = (summary or {}).get("settings", {}).get("face", {})
    cut = ("the photo's largest square around the face (all of a square photo) is kept, not "
           "rotated, and resized (area interpolation): the model sees hair, background and the "
           "generator's traces around the face too." if options.view == "image" else
           ("the eye line is levelled, " if options.level else
            "the face is not rotated (a pixel-exact cut keeps the generator's traces), ")
           + "a square with a margin is cut and resized (area interpolation).")
    return "\n".join([
        "## Preprocessing",
        "Every image goes through `faces.extract_face`: MTCNN finds the largest confident face, "
        + cut,
        f"- Cut: {options.size} px, {options.color}, {describe_view(options)}",
        f"- Minimum face: {face.get('min_face', options.min_face)} px, "
        f"minimum MTCNN confidence {face.get('min_confidence', options.min_confidence)}",
        "- Images with no usable face get no verdict (`not a face`); they are counted, not scored.",
    ])


def _training(loaded) -> str:
    lines = ["## Training recipe"]
    if loaded.config is None:
        return "\n".join(lines + ["No config.yaml beside the model."])
    recipe = {k: v for k, v in loaded.config.to_dict().items() if k != "data"}
    lines += ["```yaml", yaml.safe_dump(recipe, sort_keys=False).strip(), "```"]
    env = read_json_object(RunFolder(loaded.root).env)
    if env:
        packages = env.get("packages", {})
        versions = ", ".join(f"{k} {v}" for k, v in packages.items()
                             if k in ("tensorflow", "tensorflow-cpu", "keras"))
        lines.append(f"Environment: Python {env.get('python', '?')}, {versions}; devices "
                     f"{', '.join(env.get('devices', [])) or '?'}.")
    lines.append(_provenance(loaded.root, env or {}))
    shown = model_version.version(loaded.root, model_version.content_hash(loaded.path))
    lines.append(f"Version: {shown} (the registry's, from `fakeface register`, else the "
                 f"weights' content hash), as `serve` reports it.")
    return "\n".join(lines)


def _validation(root: Path) -> str:
    metrics = read_json_object(RunFolder(root).metrics)
    if not metrics:
        return "## Validation metrics\nNo metrics.json beside the model."
    rows = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    text = "## Validation metrics\nFrom training (best checkpoint, threshold 0.5).\n\n" + markdown_table(("metric", "value"), rows)
    probe = read_json_object(RunFolder(root).probe)
    if probe:
        text += (f"\n\nThe head started as a logistic-regression probe on the frozen features "
                 f"(C {probe.get('C')}): validation AUC {format_value(probe.get('val_auc'))}, "
                 f"accuracy {format_value(probe.get('val_accuracy'))}; fine-tuning had to beat it.")
    return text


def _empty_figure(name: str, m: dict) -> str:
    """Why evaluation figure `name` would show nothing (one class only; no such mistake), or ""."""
    cells, counts = m.get("confusion_matrix", {}).get("cells", {}), m.get("counts", {})
    said, truth = {"worst_false_positives": ("fake", "real"), "worst_false_negatives": ("real", "fake")}.get(name, ("", ""))
    if name == "roc_curve" and 0 in (counts.get("real"), counts.get("fake")):
        return "only one class present"
    empty = said and cells.get(f"predicted {said}", {}).get(f"actual {truth}") == 0
    return f"no {truth} face was called {said}" if empty else ""


def _evaluations(root: Path) -> tuple[str, list[dict]]:
    found = [(p.parent, m) for p in sorted(root.glob(f"{EVAL_PREFIX}-*/{METRICS_FILE}"))
             if (m := read_json_object(p))]
    lines = ["## Evaluation"]
    if not found:
        return "\n".join(lines + ["No evaluation yet (run `fakeface evaluate MODEL DATA`)."]), []
    rows = [(folder.name, m.get("split", "?"), m.get("counts", {}).get("total"),
             m.get("rejected", {}).get("count", 0), m.get("threshold"), *(m.get(k) for k in EVAL_COLUMNS))
            for folder, m in found]
    lines.append(markdown_table(("evaluation", "split", "images", "no face", "threshold", *EVAL_COLUMNS), rows))
    for folder, m in found:
        matrix = m.get("confusion_matrix", {}).get("matrix")
        if matrix:
            lines += [f"\n**{folder.name}** confusion matrix (positive = fake):\n",
                      markdown_table(("", "actual fake", "actual real"),
                             [("predicted fake", *matrix[0]), ("predicted real", *matrix[1])])]
        lines.append("")
        for name in ("roc_curve", "score_histograms", "worst_false_positives", "worst_false_negatives"):
            file, empty = m.get("files", {}).get(name), _empty_figure(name, m)
            if empty:
                lines.append(f"- {name.replace('_', ' ')} left out: {empty}")
            elif file and (folder / file).is_file():
                lines.append(f"![{name}]({folder.name}/{file})")
        notes = m.get("notes") or {}
        lines += [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(lines), [m for _, m in found]


def _robustness(root: Path) -> tuple[str, pd.DataFrame | None]:
    files = (sorted(root.glob(f"{robustness.PREFIX}*/{robustness.TABLE_FILE}"))
             + sorted(root.glob(robustness.TABLE_FILE)))
    lines = ["## Robustness"]
    if not files:
        return "\n".join(lines + ["No robustness sweep yet (run `fakeface robustness MODEL DATA`)."]), None
    frame = None
    for file in files:
        try:
            frame = pd.read_csv(file)
            columns = [c for c in ("condition", "accuracy", "roc_auc", "accuracy_real", "accuracy_fake")
                       if c in frame]
            lines += [f"`{file.relative_to(root)}`: degradations applied to the model's input "
                      "after detection (JPEG in the wild hits the whole image before the cut).\n",
                      markdown_table(columns, frame[columns].itertuples(index=False))]
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            lines.append(f"`{file.relative_to(root)}` unreadable: {exc}")
    return "\n".join(lines), frame


def _fairness(root: Path) -> tuple[str, dict | None]:
    report = read_json_object(root / REPORT_DIR / REPORT_FILE)
    lines = ["## Fairness"]
    if not report:
        return "\n".join(lines + ["No fairness report (run `fakeface fairness MODEL LABELS`)."]), None
    lines.append(f"{report.get('rows', '?')} labelled faces ({report.get('part', '?')}), threshold "
                 f"{format_value(report.get('threshold'))}. FPR = real faces called fake. "
                 f"Intervals: {report.get('definitions', {}).get('ci', '95%')}.")
    groups = [g for g in report.get("groups", []) if isinstance(g, dict) and " x " not in str(g.get("attribute", ""))]
    if groups:
        columns = [c for c in FAIRNESS_COLUMNS if c in groups[0]]
        lines += ["", markdown_table(columns, [[g.get(c) for c in columns] for g in groups])]
    flags = report.get("flags") or []
    lines += ["", "Flags:" if flags else f"Flags: {NO_FLAGS}"] + [f"- {f}" for f in flags]
    return "\n".join(lines), report


def _limits(evaluations: list[dict], robust: pd.DataFrame | None, fairness: dict | None,
            options) -> str:
    lines = [
        "## Known limits",
        "- Trained and judged on FFHQ real faces vs StyleGAN/StyleGAN2 faces, 256 px JPEG q75. "
        "Other generators (diffusion, face swaps), other resolutions and other compression "
        "are out of distribution.",
        f"- The model sees the {describe_view(options)}; a photo in which MTCNN finds no "
        "face gets no verdict.",
        "- P(fake) is as well calibrated as the Calibration section shows (its ECE against "
        "the noise floor), and only on faces like the test faces.",
    ]
    for m in evaluations:
        n, acc = m.get("counts", {}).get("total"), m.get("accuracy")
        if n and acc is not None:
            ci = binomtest(round(acc * n), n).proportion_ci(method="wilson")
            lines.append(f"- {m.get('split', '?')} accuracy {acc:.3f} on {n} images: 95% interval "
                         f"{ci.low:.3f}-{ci.high:.3f} (Wilson); small sets say little.")
    if robust is not None and {"condition", "accuracy"} <= set(robust.columns) and len(robust) > 1:
        clean = robust.loc[robust["condition"] == "clean", "accuracy"]
        worst = robust.loc[robust["accuracy"].idxmin()]
        if len(clean):
            lines.append(f"- Degraded inputs: accuracy falls from {clean.iloc[0]:.3f} (clean) to "
                         f"{worst['accuracy']:.3f} under {worst['condition']}.")
    if fairness is not None:
        lines.append("- The labelled fairness faces (UTKFace) are all real and of another format: "
                     "their false positive rates say little about the detector; per-group rates "
                     "on its own held-out faces, with estimated groups, are in In-distribution "
                     "fairness when that report is there.")
    return "\n".join(lines)


def card_text(model_path: str | Path) -> str:
    """The model card of the model at `model_path`, in Markdown (image links relative to its
    folder), from what its folder holds."""
    return _card(artifacts.load_model(model_path))


def _card(loaded) -> str:
    """The card's sections, joined."""
    root = loaded.root
    evaluation, evaluations = _evaluations(root)
    robust, frame = _robustness(root)
    fair, report = _fairness(root)
    sections = [_header(loaded), _data(loaded), _preprocessing(loaded), _training(loaded),
                _validation(root), evaluation, generalisation_section(root),
                threshold_section(root), band_section(root, evaluations),
                calibration_section(root), _learning_curve(root), robust, fair,
                fairness_indist_output.card_section(root), _limits(evaluations, frame, report, loaded.face_options),
                _licences(loaded)]
    return "\n\n".join(s for s in sections if s) + "\n"


def write_card(model_path: str | Path) -> Path:
    """Write MODEL_CARD.md into the model's folder and return its path."""
    loaded = artifacts.load_model(model_path)
    path, text = loaded.root / CARD, _card(loaded)
    try:
        path.write_text(text)
    except OSError as exc:
        raise FakefaceError(f"cannot write {path}: {exc.strerror or exc}") from None
    tracking.log_report(loaded.root, "card", {}, path)
    return path

