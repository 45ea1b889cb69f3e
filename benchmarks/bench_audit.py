"""The audit and the index build against their ceilings, measured in the same process (issue 19).

    python benchmarks/bench_audit.py                          # a small world made in a temporary folder
    python benchmarks/bench_audit.py --world W --generated 96 --repeat 5

Ceilings are the stages a command cannot avoid, each timed alone on the same items:

- index build (content): decode every training item at the index's fps + the descriptor on those frames.
  Printed: the build's wall time, decode alone, descriptor alone (one item at a time, and as many items at
  once as the build describes: `index.content.item_workers`), and the build's throughput as a fraction of
  the descriptor's own (frames per second; the target is 0.7 or more of the one-at-a-time rate).
- warm audit (the descriptor loaded, the content and motion index built beforehand with `index build
  --motion`, a new output folder each run, no report): decode of the generated items at the audit's fps,
  the descriptor, one batched content search, optical flow and motion descriptors (`describe_motion`) and
  the motion search with natural-motion filtering (`MotionAuditor.score_motion`). Printed: the audit's
  wall time, the sum of those stages, and the ratio (the target is 1.25 or less).

The "generated" items are copies of the world's first --generated training videos (each has an exact
content and motion match, so every item goes through every stage). Medians of --repeat runs; the
machine's load average is printed with them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _median_time(fn, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default=None, help="a world folder (default: `diffmem world make --size small`)")
    ap.add_argument("--generated", type=int, default=48, help="generated items (copies of training videos)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--index", default=None, help="a prebuilt content index of --world with its motion index "
                    "(`diffmem index build W --out INDEX --motion`): only the warm audit is measured")
    args = ap.parse_args(argv)

    from diffmem.data.manifest import load_manifest
    from diffmem.device import set_threads
    from diffmem.features import load_descriptor
    from diffmem.features.motion import describe_motion, read_motion_frames
    from diffmem.index import VectorIndex, build_content_index
    from diffmem.index.content import item_workers, read_item_frames
    from diffmem.index.motion import MOTION_SUBFOLDER, MotionIndex, build_motion_index_beside
    from diffmem.studies.audit import audit
    from diffmem.studies.motion_audit import MotionAuditConfig, MotionAuditor, content_duplicate_groups

    set_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_audit_"))
    try:
        world = Path(args.world) if args.world else tmp / "world"
        if not args.world:
            subprocess.run([str(Path(sys.executable).with_name("diffmem")), "world", "make", str(world), "--size", "small"],
                           check=True, stdout=subprocess.DEVNULL)
        train = load_manifest(world)
        videos = [it for it in train.items if it.kind == "video"][: args.generated]
        gen = tmp / "gen"
        gen.mkdir()
        for it in videos:
            shutil.copy(it.path, gen / it.path.name)
        desc = load_descriptor("builtin")
        fps = 8.0

        # ---- index build (content) against decode + descriptor
        n_build = 0
        t_build = builds = t_decode_train = t_desc_train = t_desc_par = n_frames = n_workers = None

        def build():
            nonlocal n_build
            n_build += 1
            build_content_index(train, tmp / f"idx{n_build}", descriptor=desc, fps=fps, progress=False)

        if args.index is None:
            t_build, builds = _median_time(build, args.repeat)
            frames = {}

            def decode_train():
                for it in train.items:
                    frames[it.id] = read_item_frames(it.path, fps).array

            t_decode_train, _ = _median_time(decode_train, args.repeat)
            n_frames = sum(len(f) for f in frames.values())
            t_desc_train, _ = _median_time(lambda: [desc.encode(f) for f in frames.values()], args.repeat)
            n_workers = item_workers()

            def desc_workers():
                with ThreadPoolExecutor(n_workers) as ex:
                    list(ex.map(desc.encode, frames.values()))

            t_desc_par, _ = _median_time(desc_workers, args.repeat)

        # ---- warm audit against a prebuilt content + motion index
        if args.index is None:
            index_dir = tmp / "idx1"
            build_motion_index_beside(VectorIndex.open(index_dir), progress=False)
        else:
            index_dir = Path(args.index)
        n_audit = 0

        last = {}

        def run_audit():
            nonlocal n_audit
            n_audit += 1
            last["summary"] = audit(gen, index_dir, tmp / f"audit{n_audit}", progress=False, report=False).summary

        run_audit()  # warm: imports, the flow estimator, the descriptor's first call
        t_audit, audits = _median_time(run_audit, args.repeat)

        items = list(load_manifest(gen).items)
        index = VectorIndex.open(index_dir)
        motion_index = MotionIndex.open(index_dir / MOTION_SUBFOLDER)
        config = MotionAuditConfig(policy=motion_index.policy)
        auditor = MotionAuditor(motion_index, config, content_duplicate_groups(index, config.dup_threshold))
        gframes, gdesc, gmotion, mframes = {}, {}, {}, {}

        def g_decode():
            for it in items:
                gframes[it.id] = read_item_frames(it.path, fps).array
                if config.policy.fps != fps or config.policy.max_frames is not None:
                    mframes[it.id] = read_motion_frames(it.path, config.policy)
                else:
                    mframes[it.id] = gframes[it.id]

        def g_desc():
            for k, f in gframes.items():
                gdesc[k] = desc.encode(f)

        def g_search():
            index.search(np.concatenate(list(gdesc.values())), 1)

        def g_flow():
            for k, f in mframes.items():
                gmotion[k] = describe_motion(f, config.policy, auditor.estimator)

        def g_msearch():
            for k, m in gmotion.items():
                auditor.score_motion(k, m)

        stages = {}
        for name, fn in (("decode", g_decode), ("descriptor", g_desc), ("content search (batched)", g_search),
                         ("flow + motion descriptor", g_flow), ("motion search + NMF", g_msearch)):
            stages[name], _ = _median_time(fn, args.repeat)
        ceiling = sum(stages.values())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.threads} thread(s); medians of {args.repeat}")
    if t_build is not None:
        print(f"\nindex build: {len(train.items)} training items, {n_frames} frames at {fps:g} fps")
        print(f"  build (content)       {t_build:8.2f} s   runs {', '.join(f'{t:.2f}' for t in builds)}")
        print(f"  decode alone          {t_decode_train:8.2f} s")
        print(f"  descriptor alone      {t_desc_train:8.2f} s")
        print(f"  descriptor alone, {n_workers} items at once {t_desc_par:6.2f} s")
        print(f"  build throughput / descriptor throughput = {t_desc_train / t_build:.2f}  (target >= 0.7; the build "
              f"describes {n_workers} items at once)")
        print(f"  build throughput / descriptor throughput on {n_workers} items at once = {t_desc_par / t_build:.2f}")
    print(f"\nwarm audit: {len(items)} generated videos against a prebuilt content + motion index")
    for name, t in stages.items():
        print(f"  {name:26s}{t:8.3f} s")
    print(f"  ceiling (sum)             {ceiling:8.3f} s")
    print(f"  audit                     {t_audit:8.3f} s   runs {', '.join(f'{t:.2f}' for t in audits)}")
    print(f"  audit / ceiling = {t_audit / ceiling:.2f}  (target <= 1.25)")
    print(f"  flows computed {last['summary']['motion_flow_pairs']}, of them between a frame and itself "
          f"{last['summary']['motion_repeated_pairs']} (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
