"""Inference-time detection: what it costs, and how well it separates memorized prompts (on demand).

    python benchmarks/bench_detect.py cost    [--model builtin:tiny-t2v] [--prompts 8] [--num-steps 25]
    python benchmarks/bench_detect.py quality [--model builtin:tiny-t2v] [--world W] [--work DIR]
                                              [--samples 2] [--extra-novel 40] [--labels FILE]
    python benchmarks/bench_detect.py startup [--model builtin:tiny-t2v-large] [--prompts P] [--n 42] [--repeat 5]

startup (performance issue: a short command's process wall time at most 2x its scoring time): runs
`diffmem detect MODEL --prompts P --out TMP` as a new process --repeat times and prints, per run and as
medians, the process wall time, the scoring time the command records (`summary.json`: cost.seconds_scoring,
the model's forward passes over every prompt), their ratio, and the floor measured in the same run: a
process that only imports torch and exits as `diffmem` does (the collector paused while torch is imported,
then frozen). P defaults to the first --n prompts of a
large world built in a temporary folder.

cost: per (n seeds, s steps), wall seconds and denoiser evaluations per prompt, both as a fraction of one
full generation timed in the same run (the baseline), and the magnitude hook's overhead over the same
early-stopped sampling without it. Falls back to a randomly initialised model of the tiny architecture
when the built-in checkpoint is not installed (the cost is the same).

quality (the detection issue's acceptance run; slow on a CPU: generation + audit + detection):
1. the world (`make_world(W, seed=0, size="small")` if W has none) and its prompts.jsonl, plus
   `--extra-novel` prompts composed from its vocabulary (sprite x background x common motion, never a
   training caption) so that the false-positive rates are resolved more finely;
2. labels by auditing `--samples` generations per prompt (25-step DDIM, CFG `--guidance`, default 3) with `diffmem audit`'s
   study (builtin descriptor content part + motion part: OFS-k with natural motion filtering); a prompt
   is memorized when any of its samples is, its kind by the verdicts. `--labels` skips this with a
   ready table (e.g. `diffmem extract`'s extract.parquet);
3. `run_detect` at n = 4, s = 5 (its evaluation grid gives n in {1, 4} x s in {1, 5} from the same
   records) and once more at n = 4, s = 1 to time the shared-unconditional first-step path;
4. a table per evaluation set (memorized vs novel; content; motion; each prompt group where the audit
   found both classes) of AUC and TPR at 1 % / 3 % FPR per magnitude, with the cost as a fraction of
   one generation;
5. the world's motion_memorization group by construction (signature motion vs control, same
   appearances; not audited), and a confound check: how much of the content magnitude the caption's
   background word alone explains.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def _model(name: str):
    try:
        from diffmem.models import load_adapter

        return load_adapter(name), name
    except Exception as e:  # no checkpoint yet: same architecture, random weights
        import torch

        from diffmem.models.tiny import TinyAdapter, TinyConfig, TinyModel, build_vocab

        torch.manual_seed(0)
        cfg = TinyConfig(channels=(48, 96), vocab=build_vocab(["a cat moves right across grass", "a cup loops over stars"]))
        return TinyAdapter(TinyModel(cfg), name="random-tiny"), f"random-tiny ({type(e).__name__}: {e})"


def _time(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ------------------------------------------------------------------------------------------- cost


def cost(args) -> None:
    from diffmem.detect import DetectConfig, MagnitudeDetector
    from diffmem.detect.magnitude import first_step_records
    from diffmem.models.sampler import SamplerConfig, sample

    adapter, label = _model(args.model)
    prompts = [f"a cat moves right across grass {k}" for k in range(args.prompts)]
    cfg = SamplerConfig(num_steps=args.num_steps, guidance_scale=7.5)
    bs = args.batch_size
    sample(adapter, prompts[:1], [0], cfg, max_steps=1, decode=False, progress=False)  # warm-up
    t_gen = _time(lambda: sample(adapter, prompts, list(range(len(prompts))), cfg, batch_size=bs, decode=False,
                                 progress=False), repeat=1) / len(prompts)
    print(f"model: {label}; latent shape {tuple(adapter.latent_shape())}; {args.num_steps}-step DDIM, CFG 7.5; "
          f"{len(prompts)} prompts, batch {bs}")
    print(f"baseline: one full generation = {t_gen * 1000:.0f} ms per sample, {2 * args.num_steps} denoiser evaluations\n")
    print(f"{'n':>2} {'s':>2} {'path':>10} {'ms/prompt':>10} {'evals/prompt':>12} {'evals/gen':>9} {'time/gen':>9} "
          f"{'no-hook ms':>10} {'overhead':>8}")
    for n, s in ((1, 1), (4, 1), (1, 5), (4, 5)):
        st = DetectConfig(seeds=n, steps=s, num_steps=args.num_steps)
        all_p = [p for p in prompts for _ in range(n)]
        all_s = [k for _ in prompts for k in range(n)]

        def hook_path():
            sample(adapter, all_p, all_s, cfg, batch_size=bs, hooks=[MagnitudeDetector(steps=s)], max_steps=s,
                   decode=False, progress=False)

        def no_hook():  # the same early-stopped sampling; CFG alone already evaluates cond + uncond
            sample(adapter, all_p, all_s, cfg, batch_size=bs, max_steps=s, decode=False, progress=False)

        th = _time(hook_path) / len(prompts)
        tn = _time(no_hook) / len(prompts)
        print(f"{n:>2} {s:>2} {'hook':>10} {th * 1000:>10.0f} {st.denoiser_evals_per_prompt():>12.2f} "
              f"{st.cost_fraction():>9.3f} {th / t_gen:>9.3f} {tn * 1000:>10.0f} {th / tn:>7.2f}x")
        if s == 1:
            tf = _time(lambda: first_step_records(adapter, prompts, list(range(n)), cfg, batch_size=bs)) / len(prompts)
            print(f"{n:>2} {s:>2} {'shared-u':>10} {tf * 1000:>10.0f} {st.denoiser_evals_per_prompt(len(prompts)):>12.2f} "
                  f"{st.cost_fraction(len(prompts)):>9.3f} {tf / t_gen:>9.3f} {'':>10} {'':>8}")


# ---------------------------------------------------------------------------------------- startup


def startup(args) -> None:
    import os
    import shutil
    import statistics
    import subprocess
    import sys
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        prompts = args.prompts
        if prompts is None:
            from diffmem.world import make_world

            make_world(tmp / "world", seed=0, size="large", progress=False)
            lines = [ln for ln in (tmp / "world" / "prompts.jsonl").read_text().splitlines() if ln.strip()]
            prompts = tmp / "prompts.jsonl"
            prompts.write_text("\n".join(lines[:args.n]) + "\n")
        exe = Path(sys.executable).with_name("diffmem")
        # An installed package starts from its cached bytecode; with PYTHONDONTWRITEBYTECODE set (as on the
        # development machine) every module is compiled from source on every start, 0.1-0.2 s more. The runs
        # go without it, after one untimed run that writes the cache.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["OMP_NUM_THREADS"] = "1"
        if "PYTHONDONTWRITEBYTECODE" in os.environ:
            print("PYTHONDONTWRITEBYTECODE is set here; the timed runs go without it (bytecode cached, as installed)")
        subprocess.run([str(exe), "detect", args.model, "--prompts", str(prompts), "--out", str(tmp / "warm")],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        floor, walls, scoring = [], [], []
        for k in range(args.repeat):
            t0 = time.perf_counter()
            # imported and left as `diffmem` does (collector paused, then frozen: cli._import_torch, cli.run):
            # the floor is what importing torch itself costs
            subprocess.run([sys.executable, "-c", "import gc; gc.disable(); import torch; gc.enable(); gc.freeze()"],
                           check=True, env=env)
            floor.append(time.perf_counter() - t0)
            out = tmp / f"detect{k}"
            t0 = time.perf_counter()
            run = subprocess.run([str(exe), "detect", args.model, "--prompts", str(prompts), "--out", str(out)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            walls.append(time.perf_counter() - t0)
            if run.returncode:
                raise SystemExit(f"diffmem detect failed:\n{run.stderr}")
            scoring.append(json.loads((out / "summary.json").read_text())["cost"]["seconds_scoring"])
            print(f"run {k + 1}: wall {walls[-1]:.2f} s, scoring {scoring[-1]:.2f} s, ratio {walls[-1] / scoring[-1]:.2f}; "
                  f"import torch alone {floor[-1]:.2f} s")
        w, sc, fl = (statistics.median(v) for v in (walls, scoring, floor))
        ratios = sorted(a / b for a, b in zip(walls, scoring))
        print(f"\n{args.model}, {sum(1 for _ in open(prompts))} prompts, {args.repeat} runs, load average "
              f"{os.getloadavg()[0]:.2f}")
        print(f"median: process wall {w:.2f} s, scoring {sc:.2f} s, ratio {statistics.median(ratios):.2f} "
              f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}; target 2.00 or less)")
        print(f"floor: importing torch in a new process {fl:.2f} s = {fl / sc:.2f}x the scoring time; the rest of the "
              f"start-up and exit: {w - sc - fl:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------- quality


def extra_novel_prompts(world: Path, n: int, seed: int = 0) -> list[dict]:
    """Captions of sprite x background x common-motion combinations that no training clip carries."""
    import pandas as pd

    from diffmem.world.clips import caption_of

    train = set(pd.read_parquet(world / "train.parquet")["caption"])
    voc = json.loads((world / "ground_truth.json").read_text())["vocabulary"]
    used = {json.loads(line)["prompt"] for line in (world / "prompts.jsonl").read_text().splitlines() if line.strip()}
    motions = [("linear", d) for d in ("right", "left", "up", "down")] + \
        [(m, "") for m in ("circle", "zigzag", "zoom_in", "zoom_out")]
    cands = sorted({caption_of(s, b, m, d) for s in voc["sprites"] for b in voc["backgrounds"] for m, d in motions}
                   - train - used)
    random.Random(seed).shuffle(cands)
    return [{"prompt": c, "group": "novel_extra"} for c in cands[:n]]


def audit_labels(world: Path, generated: Path, out: Path) -> Path:
    """Audit the generated samples (`diffmem.studies.audit`: content part + motion part) and write the
    per-prompt counts (prompt, n_samples, n_content, n_motion) that `diffmem detect --labels` reads."""
    import pandas as pd

    from diffmem.index.content import build_content_index, open_content_index
    from diffmem.studies.audit import audit
    from diffmem.studies.motion_audit import motion_part

    folder = out.parent / "audit"
    rep = build_content_index(world / "train.parquet", folder / "train_index", descriptor="builtin", progress=False)
    index, _ = open_content_index(rep.index.folder, "builtin")
    part = motion_part(index, folder)
    res = audit(generated / "manifest.parquet", rep.index.folder, folder, parts=[part], motion=False, progress=False)
    verdicts = pd.DataFrame([{"id": r["id"], "verdict": r["verdict"]} for r in res.items])
    meta = pd.read_parquet(generated / "manifest.parquet")[["id", "prompt"]]
    s = meta.merge(verdicts, on="id")
    per = s.groupby("prompt", sort=False).agg(
        n_samples=("verdict", "size"), n_content=("verdict", lambda v: int(v.isin(["content", "both"]).sum())),
        n_motion=("verdict", lambda v: int(v.isin(["motion", "both"]).sum()))).reset_index()
    per.to_parquet(out)
    print(f"audit: {len(s)} samples, verdicts {s['verdict'].value_counts().to_dict()}; report {folder}/report.html")
    return out


def role_motion_grid(world: Path, steps_parquet: Path, names) -> list[dict]:
    """The world's motion_memorization group labelled by construction (role memorized: a signature motion
    in another appearance; control: a common motion), not by audit: AUC per magnitude over the n x s grid.
    Shows what the magnitudes do on the set built for motion, even when the audit finds no motion copy."""
    import pandas as pd

    from diffmem.detect.evaluate import evaluate_scores
    from diffmem.detect.magnitude import aggregate_records

    role = {}
    for line in (world / "prompts.jsonl").read_text().splitlines():
        r = json.loads(line) if line.strip() else {}
        if r.get("group") == "motion_memorization":
            role[r["prompt"]] = r["role"] == "memorized"
    st = pd.read_parquet(steps_parquet)
    recs = [dict(r, key=r["prompt"]) for r in st.to_dict("records") if r["prompt"] in role]
    seeds, steps = int(st["seed"].nunique()), int(st["step"].max()) + 1
    out = []
    print(f"\nmotion_memorization by role (construction labels, not audited): {sum(role.values())} signature-motion "
          f"vs {len(role) - sum(role.values())} control prompts")
    for n in sorted({1, seeds}):
        for s in sorted({1, steps}):
            a = aggregate_records(recs, seeds=n, steps=s, names=names)
            ps = list(role)
            ev = evaluate_scores({m: [a[p][m] for p in ps] for m in names}, [role[p] for p in ps])
            out.append({"seeds": n, "steps": s, **{f"{m}_auc": ev[m]["auc"] for m in names}})
            print(f"  n={n} s={s}: " + "  ".join(f"{m} AUC {ev[m]['auc']:.4f}" for m in names))
    return out


def background_confound(detect_parquet: Path) -> dict:
    """How much of the content magnitude the caption's background word alone explains (R^2 of log content on
    the background), with the audited memorized count per background: a confound check for the world."""
    import numpy as np
    import pandas as pd

    d = pd.read_parquet(detect_parquet)
    bg = d["prompt"].str.split().str[-1]
    y = np.log(d["content"].to_numpy())
    fitted = pd.Series(y).groupby(bg.to_numpy()).transform("mean").to_numpy()
    r2 = float(1 - ((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    per = {b: {"prompts": int((bg == b).sum()), "memorized": int(d.loc[bg == b, "memorized"].fillna(False).sum()),
               "median_content": float(d.loc[bg == b, "content"].median())} for b in sorted(set(bg))}
    print(f"\nconfound check (n=4, s=1): the caption's background alone explains R^2 = {r2:.3f} of log content magnitude")
    for b, v in per.items():
        print(f"  {b:10s} {v['prompts']:3d} prompts, {v['memorized']:3d} memorized by audit, median content {v['median_content']:.4f}")
    return {"r2_log_content_on_background": r2, "per_background": per}


def quality(args) -> None:
    from diffmem.detect import DetectConfig
    from diffmem.studies.detect import run_detect
    from diffmem.studies.generate import GenerateConfig, generate
    from diffmem.world import make_world

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    world = Path(args.world)
    if not (world / "prompts.jsonl").exists():
        make_world(world, seed=0, size="small")
    prompts = work / "prompts.jsonl"
    rows = [json.loads(line) for line in (world / "prompts.jsonl").read_text().splitlines() if line.strip()]
    rows += extra_novel_prompts(world, args.extra_novel)
    prompts.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "group") if k in r}) + "\n" for r in rows))
    print(f"{len(rows)} prompts ({len({r['prompt'] for r in rows})} distinct), {args.extra_novel} extra novel")

    t0 = time.perf_counter()
    if args.labels:
        labels = Path(args.labels)
    else:
        g = generate(args.model, prompts, work / "generated",
                     GenerateConfig(n=args.samples, steps=args.num_steps, guidance=args.guidance),
                     batch_size=args.batch_size, progress=False)
        print(f"generated {g['n_samples']} samples in {time.perf_counter() - t0:.0f} s")
        t1 = time.perf_counter()
        labels = audit_labels(world, work / "generated", work / "audit_counts.parquet")
        print(f"audited in {time.perf_counter() - t1:.0f} s")

    st = DetectConfig(seeds=4, steps=5, num_steps=args.num_steps, guidance_scale=args.guidance)
    s5 = run_detect(args.model, prompts, work / "detect_n4_s5", settings=st, labels=labels,
                    batch_size=args.batch_size, progress=False)
    s1 = run_detect(args.model, prompts, work / "detect_n4_s1", settings=DetectConfig(seeds=4, steps=1,
                    num_steps=args.num_steps, guidance_scale=args.guidance), labels=labels, batch_size=args.batch_size, progress=False)
    print(f"\ndetection n=4 s=5 (hook path): {s5['cost']['seconds_per_prompt']} s/prompt; "
          f"n=4 s=1 (shared uncond): {s1['cost']['seconds_per_prompt']} s/prompt, "
          f"{s1['cost']['denoiser_evals_per_prompt']:.2f} evals/prompt")
    names = s5["magnitudes"]
    print(f"\n{'set':28s} {'n':>2} {'s':>2} {'cost':>6} " + " ".join(f"{m + ' AUC':>12} {'TPR@1%':>7} {'TPR@3%':>7}"
                                                               for m in names))
    for r in s5["evaluation_grid"]:
        ev = s5["evaluation"][r["set"]][names[0]]
        label = f"{r['set']} ({ev['n_memorized']}+/{ev['n_novel']}-)"
        print(f"{label:28s} {r['seeds']:>2} {r['steps']:>2} {r['cost_fraction']:>6.3f} " + " ".join(
            f"{r[m + '_auc']:>12.4f} {r[m + '_tpr@1%fpr']:>7.3f} {r[m + '_tpr@3%fpr']:>7.3f}" for m in names))
    roles = role_motion_grid(world, work / "detect_n4_s5" / "steps.parquet", names)
    confound = background_confound(work / "detect_n4_s1" / "detect.parquet")
    (work / "quality.json").write_text(json.dumps({"guidance": args.guidance, "n4_s5": s5["evaluation_grid"],
                                                   "n4_s1_cost": s1["cost"], "motion_by_role": roles,
                                                   "background_confound": confound}, indent=2, default=str))
    print(f"\nwrote {work}/quality.json; reports in {work}/detect_n4_s5/report.html")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--model", default="builtin:tiny-t2v")
    c.add_argument("--prompts", type=int, default=8)
    c.add_argument("--num-steps", type=int, default=25)
    c.add_argument("--batch-size", type=int, default=16)
    q = sub.add_parser("quality")
    q.add_argument("--model", default="builtin:tiny-t2v")
    q.add_argument("--world", default="bench-detect/world")
    q.add_argument("--work", default="bench-detect")
    q.add_argument("--samples", type=int, default=2, help="generations per prompt audited for the labels")
    q.add_argument("--extra-novel", type=int, default=40)
    q.add_argument("--labels", default=None, help="ready labels (skips generation and audit)")
    q.add_argument("--num-steps", type=int, default=25)
    q.add_argument("--guidance", type=float, default=3.0,
                   help="CFG scale of the audited generations and of the detection sampler (default 3: where the "
                        "built-in tiny model memorizes most cleanly; the library default is 7.5)")
    q.add_argument("--batch-size", type=int, default=16)
    st = sub.add_parser("startup")
    st.add_argument("--model", default="builtin:tiny-t2v-large")
    st.add_argument("--prompts", default=None, help="a prompt file (default: the first --n prompts of a large world)")
    st.add_argument("--n", type=int, default=42)
    st.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    {"cost": cost, "quality": quality, "startup": startup}[args.mode](args)


if __name__ == "__main__":
    main()
