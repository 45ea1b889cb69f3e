"""`diffmem detect MODEL --prompts FILE --out DIR`: flag memorization-prone prompts from content and motion magnitude."""
from __future__ import annotations

import argparse

from .options import add_model_loading, add_sample_size, add_threads, count, fraction, natural, nonnegative

_SETTING_ARGS = {"seeds": "seeds", "steps": "steps", "num_steps": "num_steps", "guidance_scale": "guidance_scale",
                 "scheduler": "scheduler", "first_seed": "first_seed", "frames": "num_frames", "height": "height",
                 "width": "width"}


HELP = "flag memorization-prone prompts at inference time"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "detect", help=HELP,
        description="Score prompts by the content and motion magnitude of the text-conditional noise difference "
                    "(eps(x_t, prompt) - eps(x_t, '')), averaged over N seeds and the first S denoising steps; "
                    "no full generation. Flags prompts with thresholds from --calibration, writes --calibrate "
                    "thresholds from known-novel prompts, and evaluates against --labels (ROC AUC, TPR at 1 and 3 "
                    "percent FPR). Writes DIR/detect.parquet, steps.parquet, summary.json, report.html.")
    p.add_argument("model", metavar="MODEL", help="builtin:tiny-t2v, or a local diffusers pipeline folder")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help="prompt file: .txt (one per line), .jsonl / .csv / .parquet with a prompt (or caption) column")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (resumes a killed run)")
    p.add_argument("--seeds", type=count, default=None, metavar="N",
                   help="seeds per prompt (default 4, or the calibration's)")
    p.add_argument("--steps", type=count, default=None, metavar="S",
                   help="first denoising steps averaged (default 1, or the calibration's)")
    p.add_argument("--num-steps", type=count, default=None, metavar="T",
                   help="steps of the generation being screened; fixes the timesteps (default 25, or the calibration's)")
    p.add_argument("--guidance-scale", type=nonnegative, default=None, help="CFG scale (default 7.5, or the calibration's)")
    p.add_argument("--scheduler", choices=("ddim", "ddpm", "default"), default=None,
                   help="sampler (default ddim, or the calibration's)")
    p.add_argument("--first-seed", type=natural, default=None, help="seeds are FIRST, FIRST+1, ... (default 0)")
    p.add_argument("--calibration", default=None, metavar="FILE",
                   help="thresholds from `--calibrate` (its settings become the defaults; other settings are refused)")
    p.add_argument("--calibrate", action="store_true",
                   help="treat the prompts as known-novel (with --labels: only the novel ones) and write "
                        "DIR/calibration.json with thresholds for --fpr")
    p.add_argument("--fpr", type=fraction, default=0.01, help="false-positive rate for --calibrate (default 0.01)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="CSV/JSONL/Parquet: prompt, memorized (bool), kind (content|motion|both|none); "
                        "reports ROC AUC and TPR@FPR per magnitude")
    p.add_argument("--fpr-rule", choices=("strict", "at-most"), default="strict",
                   help="TPR@FPR with --labels: strict (default, Wen et al.): FPR strictly below the target (4 false "
                        "positives of 500 at 1 %%); at-most: FPR <= target (5 of 500), diffmem's rule before 0.2")
    p.add_argument("--detectors", type=_detectors, default=(), metavar="LIST",
                   help="comma-separated detectors scored beside the magnitudes, at the first step: anisotropy "
                        "(Asthana & Belagiannis 2026), sharpness (Jeon et al. 2025), attention (Ren et al. 2024, "
                        "cross-attention entropy; built-in models), or all; with --labels DIR/comparison.parquet "
                        "ranks every score with its cost (default: magnitudes only)")
    p.add_argument("--batch-size", type=count, default=8, help="samples per denoiser batch (default 8)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="score every prompt again")
    add_sample_size(p)
    add_model_loading(p)
    add_threads(p)
    p.set_defaults(func=_run)
    return p


_DETECTORS = ("magnitude", "anisotropy", "sharpness", "attention", "all")


def _detectors(text: str) -> tuple:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in _DETECTORS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown detector(s) {', '.join(bad) or repr(text)}; choose from "
                                         f"{', '.join(_DETECTORS)}")
    return names


def _settings(args, cal):
    from ..detect.calibrate import DetectConfig

    base = cal.settings.as_dict() if cal is not None else DetectConfig().as_dict()
    given = {k: getattr(args, a) for a, k in _SETTING_ARGS.items() if getattr(args, a) is not None}
    return DetectConfig(**{**base, **given})


def _run(args) -> int:
    from ..detect.calibrate import Calibration
    from ..studies.detect import run_detect

    cal = Calibration.load(args.calibration) if args.calibration else None
    s = run_detect(args.model, args.prompts, args.out, settings=_settings(args, cal), calibration=cal,
                   labels=args.labels, calibrate_fpr=args.fpr if args.calibrate else None,
                   fpr_rule=args.fpr_rule, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                   model_config=args.model_config, resume=args.resume, detectors=args.detectors)
    st, cost = s["settings"], s["cost"]
    print(f"{s['n_prompts']} prompts ({s['resumed']} resumed), n = {st['seeds']} seeds, s = {st['steps']} steps: "
          f"{cost['denoiser_evals_per_prompt']:.3g} denoiser evaluations per prompt = "
          f"{cost['fraction_of_generation']:.3f} of a {st['num_steps']}-step generation; {s['seconds']:.1f} s")
    for n, d in s["score_summary"].items():
        print(f"  {n:8s} median {d['median']:.4g}  max {d['max']:.4g}")
    if s["flagged"] is not None:
        thr = s["calibration"]["thresholds"]
        print(f"flagged {s['flagged']['any']} of {s['n_prompts']} ("
              + ", ".join(f"{n} > {v:.4g}: {s['flagged'].get(n, 0)}" for n, v in thr.items()) + ")")
    if s["calibration_written"]:
        print(f"wrote thresholds for FPR {args.fpr:g} to {s['calibration_written']}")
    if s["evaluation_note"]:
        print(s["evaluation_note"])
    if s["evaluation"]:
        for set_name, ev in s["evaluation"].items():
            for n in s["magnitudes"]:
                e = ev[n]
                ci = e.get("auc_ci95")
                ci = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
                print(f"  {set_name:9s} {n:8s} AUC {e['auc']:.4f}{ci}  TPR@1%FPR {e['tpr@1%fpr']:.3f}  "
                      f"TPR@3%FPR {e['tpr@3%fpr']:.3f}  ({e['n_memorized']} memorized, {e['n_novel']} novel)")
    if s.get("comparison"):
        print("detectors (set memorized, by AUC):")
        rows = sorted((r for r in s["comparison"] if r["set"] == "memorized"), key=lambda r: -r["auc"])
        for r in rows:
            ci = f" [{r['auc_lo']:.3f}, {r['auc_hi']:.3f}]" if r["auc_lo"] is not None else ""
            print(f"  {r['score']:18s} AUC {r['auc']:.3f}{ci}  TPR@1%FPR "
                  f"{r['tpr@1%fpr']:.3f}  TPR@3%FPR {r['tpr@3%fpr']:.3f}  cost {r['cost_fraction']:.3f} of a generation")
    print(f"wrote {args.out}/detect.parquet, summary.json, report.html"
          + (", comparison.parquet" if s.get("comparison") else ""))
    return 0
