"""The demo's one-page HTML report: the summary, each finding with its evidence, links to every stage."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data.labels import read_labels
from ..data.prompts import read_prompts
from ..detect.evaluate import roc_curves
from ..io.embed import clip_data_uri
from ..io.figures import roc_figure
from ..io.html import esc, img, page, table
from .demo_result import DemoResult, Stage, pct_text, value_text
from .extract_report import examples_from, pairs_html

# What each prompt group of the study is (the world's groups, see `diffmem.world`), for the report.
GROUP_NOTES = {
    "duplicated_video": "the caption of a training clip copied many times: memorization expected",
    "duplicated_image": "the caption of a training picture copied many times: memorization expected",
    "duplicated_caption": "a caption shared by several distinct clips: repeated text, but no single clip to copy",
    "curated_other": "curated prompts that the world does not list (e.g. near-duplicate captions)",
    "novel": "a sprite, background and motion all seen in training, never together: nothing to copy (control)",
    "motion_memorization": "a new appearance doing a motion that only one duplicated clip has (or a control "
                           "motion): tests motion memorization",
}

# Readable names of the AMG table's columns (others are shown by their own name).
AMG_COLUMNS = {
    "variant": "sampling", "n": "samples", "top5": "Top-5% content score", "top1": "max content score",
    "pct_above_tau": "% above tau_c", "dup_content_memorized_pct": "% duplicated-prompt samples content-memorized",
    "motion_prompts_motion_memorized_pct": "% motion prompts motion-memorized",
    "all_motion_memorized_pct": "% motion-memorized", "aligned_pct": "% matching the prompt",
    "quality": "quality: distance to the training frames (lower = better)", "quality_metric": "quality metric",
    "sec_per_sample": "s per sample", "mean_triggered_steps": "steps AMG acted", "novel_triggered_pct":
    "% novel samples AMG acted on",
}
VARIANT_NAMES = {"baseline": "plain sampling", "full": "with AMG"}


def demo_report(result: DemoResult, out: Path) -> str:
    """The demo's one page: what was found, then each finding with its evidence (tables, clips, ROC,
    AMG frames), then links to every stage's own report. Every text from data passes through `esc`."""
    st = result.settings
    how = (f"Model <b>{esc(st['model'])}</b>, {esc(st['n'])} samples per prompt (seeds {esc(st['seed'])}.."
           f"{esc(st['seed'] + st['n'] - 1)}), {esc(st['steps'])} denoising steps, guidance {esc(st['guidance'])}. "
           if st.get("model") else "")
    parts = ["<p>The whole memorization study on the <b>embedded world</b>, offline: a captioned video corpus with "
             "known duplicates, a tiny text-to-video model trained on it, and every measurement diffmem makes: "
             "which prompts are prone to memorization, which training clips the model reproduces, whether the "
             "model's own noise predictions give it away at inference time, and whether Anti-Memorization "
             f"Guidance prevents it. {how}Total time {result.seconds:.0f} s. Reproduce with "
             f"<code>diffmem demo --out {esc(out)}</code> (a second run resumes).</p>"]

    stages = [s for s in result.stages if s.name != "report"]
    rows = [[s.name, s.status, f"{s.seconds:.0f} s", s.headline or s.result] for s in stages]
    parts.append("<h2>Summary</h2>" + table(["stage", "status", "time", "result"], rows))
    bad = [s for s in stages if s.status == "failed" and s.detail.get("traceback")]
    for s in bad:
        parts.append(f"<details><summary>{esc(s.name)}: traceback</summary><pre>{esc(s.detail['traceback'])}</pre>"
                     "</details>")

    pr = result.stage("prompts")
    wd = result.stage("world")
    if pr is not None and pr.status == "done":
        parts.append("<h2>Training set and curated prompts</h2><p>" + (esc(wd.result) + ". " if wd else "")
                     + "Prompts are curated from the training captions alone (duplicated captions and "
                       "near-duplicate content, no model): " + esc(pr.result) + ".</p>" + _curated_table(pr))

    ex = result.stage("extract")
    if ex is not None and ex.status == "done":
        head = ["group", "what it is", "prompts", "samples", "content", "motion", "both", "extracted",
                "training items extracted"]
        body = []
        for g, b in [*ex.detail["by_group"].items(), ("all", ex.detail["overall"])]:
            body.append([g, GROUP_NOTES.get(g, ""), b["n_prompts"], b["n_samples"], pct_text(b["rate_content"]),
                         pct_text(b["rate_motion"]), pct_text(b["rate_both"]), pct_text(b["rate_extracted"]),
                         b["n_train_extracted"]])
        parts.append("<h2>Extraction by prompt group</h2><p>" + esc(ex.result) + ".</p><p>Share of generated "
                     "samples the audit finds copying a training item: by appearance (content), by movement "
                     f"(motion; {esc(ex.detail['motion'])}) or both.</p>" + table(head, body))
        try:
            pairs = examples_from(out / "extract", limit=12)
            if pairs:
                parts.append("<h2>Extracted training clips beside their originals</h2>" + pairs_html(pairs))
            else:
                parts.append("<h2>Extracted training clips beside their originals</h2><p>No sample was extracted.</p>")
        except Exception as e:  # the rest of the report is still worth having
            parts.append(f"<p>(examples unavailable: {esc(e)})</p>")

    det = result.stage("detect")
    if det is not None:
        parts.append("<h2>Inference-time detection</h2>")
        if det.status == "done":
            roc = _roc_uri(out)
            aucs = [v.get("auc") for v in (det.detail.get("evaluation") or {}).values() if isinstance(v, dict)]
            below = ""
            if aucs and all(a is not None and a < 0.5 for a in aucs):
                below = (" Here every AUC is <em>below</em> chance: memorized prompts change the prediction less "
                         "than novel ones. On the committed tiny model this is measured and explained in the "
                         "README's detection section: the caption's background word sets the magnitude, and along "
                         "memorized paths the prompt-free prediction already heads to the same clip, the opposite "
                         "of what Wen et al. found on Stable Diffusion.")
            parts.append("<p>Each prompt is scored before any video is made, from how much the prompt changes the "
                         "model's noise prediction in the first denoising step (content and motion magnitudes), "
                         "and the scores are compared with the audit's verdict (did the prompt extract anything). "
                         "AUC 1 = perfect separation, 0.5 = chance." + below + "</p><p>" + esc(det.result) + "</p>"
                         + (img(roc, "ROC", height=None) if roc else "<p>(no ROC: needs both kinds of prompt)</p>")
                         + _comparison_html(det.detail.get("comparison") or []))
        else:
            parts.append(f"<p>{esc(det.status)}: {esc(det.result)}</p>")

    am = result.stage("amg")
    if am is not None:
        parts.append("<h2>Anti-Memorization Guidance</h2>")
        if am.status == "done":
            tab = am.detail["table"]
            keys = ["variant"] + [k for k in tab[0] if k != "variant" and k in AMG_COLUMNS
                                  and any(r.get(k) is not None for r in tab)]
            body = [[VARIANT_NAMES.get(r.get("variant"), r.get("variant"))] + [value_text(r.get(k)) for k in keys[1:]]
                    for r in tab]
            parts.append("<p>The same memorized prompts and seeds, sampled plainly and with AMG. " + esc(am.result)
                         + ".</p>" + table([AMG_COLUMNS.get(k, k) for k in keys], body) + _amg_frames(out / "amg"))
        else:
            parts.append(f"<p>{esc(am.status)}: {esc(am.result)}</p>")

    links = [(name, out / sub) for name, sub in (("world summary", "world/summary.json"),
                                                 ("world ground truth", "world/ground_truth.json"),
                                                 ("curated prompts (with their evidence)", "prompts/curated.jsonl"),
                                                 ("the study's prompt set", "prompts/study.jsonl"),
                                                 ("extraction report", "extract/report.html"),
                                                 ("audit report", "extract/audit/report.html"),
                                                 ("per-prompt labels (for detection)", "extract/labels.jsonl"),
                                                 ("detection report", "detect/report.html"),
                                                 ("AMG report", "amg/amg_report.html"),
                                                 ("all numbers (demo.json)", "demo.json"))]
    items = "".join(f"<li><a href='{esc(p.relative_to(out).as_posix())}'>{esc(name)}</a></li>"
                    for name, p in links if p.exists() or p.name == "demo.json")
    parts.append(f"<h2>Every stage's own results</h2><ul>{items}</ul>")
    return page("diffmem demo", "".join(parts))


def _true(v) -> bool:
    """A table cell that is True (not None, not NaN, truthy)."""
    return v is not None and not (isinstance(v, float) and v != v) and bool(v)


def _curated_table(stage: Stage, limit: int = 20) -> str:
    """The top curated prompts with why each was chosen (the study prompt file's evidence)."""
    try:
        entries = read_prompts(stage.detail["study"])
    except Exception:  # the summary above still says what was curated
        return ""
    curated = [e for e in entries if (e.evidence or {}).get("reasons")]  # the world's controls have no reasons
    rows = [[e.id, e.prompt, e.group or "", e.evidence.get("n_both", ""), e.evidence.get("n_caption", ""),
             ", ".join(e.evidence.get("reasons") or [])] for e in curated[:limit]]
    if not rows:
        return ""
    more = f" ({len(curated) - limit} more in the prompt file)" if len(curated) > limit else ""
    return (table(["id", "prompt", "world group", "copies (same caption and content)", "items with this caption",
                   "why chosen"], rows)
            + f"<p>{esc(more)} {esc(len(entries) - len(curated))} prompts of the world join them in the study as "
              "controls (novel and motion-memorization prompts).</p>")


def _amg_frames(amg_dir: Path, limit: int = 6) -> str:
    """The same prompt and seed without and with AMG, side by side (memorized-without first), with the
    content scores: what AMG changed. Built from the AMG stage's per-sample table."""
    try:
        df = pd.read_parquet(amg_dir / "amg_samples.parquet")
    except Exception:
        return ""
    if not {"variant", "id", "path", "prompt"} <= set(df.columns):
        return ""
    variants = list(dict.fromkeys(df["variant"]))
    if len(variants) < 2:
        return ""
    before = "baseline" if "baseline" in variants else variants[0]
    after = "full" if "full" in variants else variants[-1]
    a = df[df["variant"] == before].set_index("id")
    b = df[df["variant"] == after].set_index("id")
    ids = [i for i in a.index if i in b.index]

    def memorized(r) -> bool:
        return any(_true(r.get(k)) for k in ("content_memorized", "motion_memorized"))

    ids.sort(key=lambda i: not memorized(a.loc[i]))
    cells = []
    for i in ids[:limit]:
        ra, rb = a.loc[i], b.loc[i]
        gifs = []
        for r in (ra, rb):
            p = Path(str(r["path"]))
            if not p.exists():  # a path relative to where the demo ran: the file's name under its variant
                p = amg_dir / "variants" / str(r["variant"]) / "samples" / p.name
            uri = clip_data_uri(p)
            gifs.append(img(uri, f"{r['variant']} {i}") if uri else "(not readable)")

        def score(r):
            v = r.get("content_score")
            return "-" if v is None or v != v else f"{v:.3f}"

        cells.append(f"<figure>{gifs[0]} {gifs[1]}<figcaption>{esc(ra['prompt'])} (seed {esc(ra.get('seed'))})<br>"
                     f"content score {esc(score(ra))} &rarr; {esc(score(rb))}"
                     f"{' (memorized without AMG)' if memorized(ra) else ''}</figcaption></figure>")
    if not cells:
        return ""
    return (f"<h3>Before and after: {esc(VARIANT_NAMES.get(before, before))} (left), "
            f"{esc(VARIANT_NAMES.get(after, after))} (right), same seed</h3>" + "".join(cells))


def _comparison_html(rows) -> str:
    """The field's detectors on the same prompts and seeds, best first, with their cost (`diffmem detect
    --detectors all`); prompt_words is the length baseline."""
    if not rows:
        return ""
    body = [[r["score"], r["detector"], f"{r['auc']:.3f}" + (f" [{r['auc_lo']:.2f}, {r['auc_hi']:.2f}]"
                                                             if r.get("auc_lo") is not None else ""),
             f"{r.get('tpr@1%fpr', float('nan')):.2f}", f"{r['cost_fraction']:.3f}"]
            for r in sorted(rows, key=lambda r: -r["auc"])]
    return ("<h3>Detectors side by side</h3><p>Every score on the same prompts and seeds against the same labels; "
            "prompt_words (the prompt's length) is the baseline a detector must beat.</p>"
            + table(["score", "detector", "AUC [95 % interval]", "TPR@1%FPR", "cost (of a generation)"], body))


def _roc_uri(out: Path) -> str | None:
    """The ROC of the detection stage (content / motion / total magnitude vs the audit's labels)."""
    try:
        df = pd.read_parquet(out / "detect" / "detect.parquet")
        lab = read_labels(out / "extract" / "labels.jsonl")
    except Exception:
        return None
    df = df[df["prompt"].isin(lab)]
    y = [lab[p]["memorized"] for p in df["prompt"]]
    if not any(y) or all(y):
        return None
    scores = {f"{name} magnitude": df[name].to_numpy() for name in ("content", "motion", "total") if name in df.columns}
    curves = roc_curves(scores, y)
    return roc_figure(curves, title="memorized (audit) vs not, by detection magnitude").data_uri() if curves else None
