"""Scale benchmark: a compressed, sharded index of up to 10 M simulated descriptors with planted copies.

    nice -n 10 python benchmarks/bench_scale.py --sizes 100000,1000000 --out /tmp/scale
    nice -n 10 python benchmarks/bench_scale.py --sizes 10000000 --out /tmp/scale10m --exact-subset 100
    python benchmarks/bench_scale.py --compare-factories --sizes 200000    # which factory measures best

For each size N it writes a `VectorIndex` (--shard-size vectors per shard, generated in chunks, never
all in RAM) and builds its compressed index shard by shard (`diffmem.index.sharded.build_compressed`):
train on a sample, encode every shard, merge; then it queries planted near-copies and reports, against
the exact search of the same vectors measured in the same run (an in-RAM FAISS IndexFlatIP where
N * d * 4 <= --exact-ram, otherwise `VectorIndex.search_exact`, the brute force streamed over the
memory-mapped shards, on --exact-subset queries):

    recall@1 (rerank)   planted source is the top-1 after exact re-ranking of the candidates
    recall@1 (codes)    same, ranking by the compressed codes only (no re-ranking)
    cand. recall        planted source is among the candidates at all
    qps (batch)         queries per second, all queries in one call (FAISS uses every thread)
    latency (1 query)   median milliseconds for one query at a time (the AMG / online pattern)
    ram index           the searchable index (merged.faiss size; measured RSS growth when loaded)
    build               train + encode + merge seconds (descriptor generation is reported apart)

Simulated descriptors (d = 384, the built-in descriptor's dimension; --dim 512 for SSCD's): clips of
4 frames; frame = normalise(a * topic + b * clip + c * noise) with a^2 = 0.2, b^2 = 0.55, c^2 = 0.25,
so frames of one clip have cosine ~0.75 (video frames resemble each other), clips of one topic ~0.2,
unrelated frames ~0. Components are uniform random vectors, which are nearly orthogonal in 384
dimensions. This is harder for product quantization than real descriptors (real ones have a lower
intrinsic dimension, so PQ loses less), so the recall here is a conservative estimate.

Planted near-copies: q = cos * x + sqrt(1 - cos^2) * r, r a random unit vector orthogonal to the
training frame x, so <q, x> = cos exactly; cos is uniform in [0.5, 0.95] (0.5 = SSCD's tau_c). By
construction x is q's nearest neighbour (siblings of x score about 0.75 * cos); the exact search checks it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

FRAMES_PER_CLIP = 4
A2, B2, C2 = 0.2, 0.55, 0.25
CHUNK = 250_000  # rows generated at a time (a multiple of FRAMES_PER_CLIP)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _uniform_unit(rng, n, d):
    # uniform in [-0.5, 0.5]^d has squared norm ~ d / 12: scaling by sqrt(12 / d) makes it ~unit
    x = rng.random((n, d), dtype=np.float32)
    x -= 0.5
    x *= np.float32(math.sqrt(12.0 / d))
    return x


def simulate(start: int, n: int, d: int, seed: int, topics: np.ndarray) -> np.ndarray:
    """Rows [start, start + n) of the simulated training set; deterministic per chunk."""
    assert start % FRAMES_PER_CLIP == 0 and n % FRAMES_PER_CLIP == 0
    rng = np.random.default_rng([seed, start])
    n_clips = n // FRAMES_PER_CLIP
    topic_of_clip = rng.integers(0, len(topics), n_clips)
    clip = _uniform_unit(rng, n_clips, d)
    clip *= np.float32(math.sqrt(B2))
    clip += np.float32(math.sqrt(A2)) * topics[topic_of_clip]
    x = _uniform_unit(rng, n, d)
    x *= np.float32(math.sqrt(C2))
    x += np.repeat(clip, FRAMES_PER_CLIP, axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_topics(n: int, d: int, seed: int) -> np.ndarray:
    t = np.random.default_rng([seed, 999]).standard_normal((max(16, n // 4096), d)).astype(np.float32)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def planted_queries(x_src: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 7])
    q_n, d = x_src.shape
    cos = rng.uniform(0.5, 0.95, q_n).astype(np.float32)
    r = rng.standard_normal((q_n, d)).astype(np.float32)
    r -= np.sum(r * x_src, 1, keepdims=True) * x_src
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q = cos[:, None] * x_src + np.sqrt(1 - cos ** 2)[:, None] * r
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), cos


def write_shards(index, n: int, d: int, seed: int) -> float:
    """Simulated frames into a VectorIndex through its own writer (item_id = clip, frame = 0..3)."""
    from tqdm import tqdm

    topics = make_topics(n, d, seed)
    t0 = time.perf_counter()
    have = len(index)
    for lo in tqdm(range(have, n, CHUNK), desc=f"simulate {n:,}", unit="chunk", file=sys.stderr):
        m = min(CHUNK, n - lo)
        v = simulate(lo, m, d, seed, topics)
        rows = [{"item_id": f"c{(lo + j) // FRAMES_PER_CLIP}", "frame": (lo + j) % FRAMES_PER_CLIP} for j in range(m)]
        index.add(v, rows)
    index.flush()
    return time.perf_counter() - t0


def timed(fn, *a, **k):
    """(result, wall seconds, CPU seconds of this process). The machine may be shared: the CPU time is
    what the step costs, the wall time also counts waiting for a CPU."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0, time.process_time() - c0


def latency_ms(search, q: np.ndarray, n: int = 100) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds of a one-query search."""
    ts, cs = [], []
    for i in range(min(n, len(q))):
        _, t, c = timed(search, q[i:i + 1])
        ts.append(t)
        cs.append(c)
    return float(np.median(ts) * 1e3), float(np.median(cs) * 1e3)


def run_size(n: int, args, factory: str | None = None) -> list[dict]:
    import faiss

    from diffmem.index.faiss_index import VectorIndex
    from diffmem.index.sharded import build_compressed, memory_estimate

    d = args.dim
    factory = factory or args.factory or f"IVF{nlist_for(n)},PQ{d // 4}x4fs"
    root = Path(args.out) / f"n{n}_d{d}_{factory.replace(',', '_')}"
    policy = {"name": "simulated", "descriptor": "simulated", "dim": d, "seed": args.seed}
    if args.reuse and not root.exists():
        _reuse_shards(Path(args.reuse), root, factory, n)
    index = VectorIndex.open_or_create(root, dim=d, policy=policy, factory=factory, shard_size=args.shard_size)
    c0 = time.process_time()
    t_gen = write_shards(index, n, d, args.seed)
    c_gen = time.process_time() - c0

    rng = np.random.default_rng([args.seed, 1])
    src = np.sort(rng.choice(n, args.queries, replace=False))
    q, cos = planted_queries(index.vectors(src), args.seed)

    # train (the sample VectorIndex uses) + encode shard by shard + merge, timed apart
    load0 = os.getloadavg()[0]
    info, t_build, c_build = timed(build_compressed, index, progress=True)
    tr = json.loads((root / "codes" / "trained.json").read_text())
    del index
    rss0 = rss_bytes()
    index, t_open, _ = timed(VectorIndex.open, root)
    index.search(q[:1], 1, params="nprobe=1")  # loads faiss.index
    rss_index = rss_bytes() - rss0
    ram_file = (root / "faiss.index").stat().st_size
    rows = []

    # exact baseline, measured in the same run
    exact_ram = n * d * 4
    ex = {"n": n, "factory": "exact: FAISS IndexFlatIP in RAM" if exact_ram <= args.exact_ram
          else "exact: streamed from the shards"}
    if exact_ram <= args.exact_ram:
        flat = faiss.IndexFlatIP(d)
        _, t_load, _ = timed(lambda: [flat.add(np.ascontiguousarray(a)) for a in index._arrays()])
        (es, ei), t_s, c_s = timed(flat.search, q, 1)
        lat, lat_cpu = latency_ms(lambda x: flat.search(x, 1), q, 20)
        ex.update(build_s=t_load, qps=len(q) / t_s, cpu_ms_per_query=c_s / len(q) * 1e3, latency_ms=lat,
                  latency_cpu_ms=lat_cpu, ram_index=exact_ram, recall1_rerank=float(np.mean(ei[:, 0] == src)))
        gt = ei[:, 0]
        del flat
    else:
        m = min(args.exact_subset, len(q))
        (es, ei), t_s, c_s = timed(index.search_exact, q[:m], 1, block=args.block)
        ex.update(build_s=0.0, qps=m / t_s, cpu_ms_per_query=c_s / m * 1e3, latency_ms=t_s / m * 1e3,
                  ram_index=args.block * d * 4,
                  recall1_rerank=float(np.mean(ei[:, 0] == src[:m])), note=f"on {m} of the queries")
        gt = np.concatenate([ei[:, 0], src[m:]])  # beyond the subset: the planted source
    rows.append(ex)
    print(json.dumps(ex), file=sys.stderr, flush=True)

    for nprobe in args.nprobe:
        for cand in args.candidates:
            p = f"nprobe={nprobe}"
            (s, k), t_q, c_q = timed(index.search, q, 1, rerank=cand, params=p)
            lat, lat_cpu = latency_ms(lambda x: index.search(x, 1, rerank=cand, params=p), q, args.latency_queries)
            kc = index.search(q, cand, rerank=1, params=p)[1]  # the candidates themselves
            hit = k[:, 0] == src
            low = cos < 0.6
            rows.append({
                "n": n, "factory": factory, "nprobe": nprobe, "candidates": cand,
                "recall1_rerank": float(hit.mean()),
                "recall1_rerank_cos<0.6": float(hit[low].mean()) if low.any() else None,
                "agree_exact_top1": float(np.mean(k[:, 0] == gt)),
                "recall1_codes": float(np.mean(kc[:, 0] == src)),
                "cand_recall": float(np.mean((kc == src[:, None]).any(1))),
                "score_err_max": float(np.abs(s[hit, 0] - cos[hit]).max()) if hit.any() else None,
                "qps": len(q) / t_q, "cpu_ms_per_query": c_q / len(q) * 1e3, "latency_ms": lat,
                "latency_cpu_ms": lat_cpu,
                "ram_index": ram_file, "ram_index_rss": rss_index,
                "ram_estimate": memory_estimate(n, d, factory)["ram_index"],
                "disk_vectors": n * d * 4, "gen_s": t_gen, "gen_cpu_s": c_gen,
                **{key: info.get(key) for key in ("train_s", "encode_s", "merge_s", "train_cpu_s", "encode_cpu_s",
                                                  "merge_cpu_s")},
                "build_s": t_build, "build_cpu_s": c_build, "n_train": tr.get("n_train"),
                "threads": faiss.omp_get_max_threads(), "encoded_now": info["encoded_now"],
                "loadavg_1min_at_build": load0, "loadavg_1min_now": os.getloadavg()[0],
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def measure_extraction(args) -> list[dict]:
    """Frames per second of the extraction steps on this CPU, one thread, for the README's plan.

    A 640x360 (16:9), 25 fps, 8 s H.264 clip is decoded whole and sampled at 1 fps; the built-in
    descriptor and a ResNet-50 (SSCD's trunk; random weights, the cost is the same) describe frames
    at SSCD's official size (short side 288 -> 512x288). Each step runs after a warm-up, --repeats
    times; the best wall time and the best CPU time (this process) are kept: on a shared machine the
    CPU rate is what the hardware does, the wall rate also counts waiting for a CPU.
    """
    import tempfile

    import torch

    from diffmem.features import load_descriptor
    from diffmem.io.video import read_frames, resize_frames, write_video

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    base = (rng.random((9, 16, 3)) * 255).astype(np.uint8)
    frames = np.stack([resize_frames(np.roll(base, t // 10, axis=1), (360, 640)) for t in range(200)])
    frames = np.clip(frames.astype(np.int16) + rng.integers(-8, 8, frames.shape), 0, 255).astype(np.uint8)
    out = []

    def rate(step, fn, n_frames, note=""):
        fn()  # warm-up
        runs = [timed(fn)[1:] for _ in range(max(1, args.repeats))]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        out.append({"step": step, "frames_per_s": n_frames / wall, "frames_per_cpu_s": n_frames / cpu,
                    "wall_s": wall, "cpu_s": cpu, "repeats": len(runs), "note": note,
                    "loadavg_1min": os.getloadavg()[0]})

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_video(path, frames, fps=25)
        n_all, n_1fps = len(read_frames(path)), len(read_frames(path, fps=1.0))
        rate("decode 640x360 H.264, every frame", lambda: read_frames(path), n_all, f"{n_all} frames")
        rate("decode 640x360 H.264, sampled at 1 fps (rate of sampled frames)", lambda: read_frames(path, fps=1.0),
             n_1fps, f"{n_1fps} of {n_all} frames kept")
    sample = resize_frames(frames[:32], 288)  # 288 x 512
    desc = load_descriptor("builtin")
    rate("built-in descriptor (384-d) on 512x288 frames, batch 32", lambda: desc.encode(sample, batch_size=32), 32)
    from transformers import ResNetConfig, ResNetModel

    net = ResNetModel(ResNetConfig()).eval()  # ResNet-50
    x = torch.rand(8, 3, 288, 512)
    with torch.no_grad():
        rate("ResNet-50 (SSCD trunk) fp32 on 512x288 frames, batch 8", lambda: net(pixel_values=x), 8)
    for r in out:
        print(json.dumps(r), file=sys.stderr, flush=True)
    return out


def _reuse_shards(src: Path, root: Path, factory: str, n: int) -> None:
    """Another factory over the same simulated vectors: link the shards, copy index.json (saves the
    generation, several minutes at 10 M)."""
    meta = json.loads((src / "index.json").read_text())
    if meta["n_vectors"] != n:
        raise SystemExit(f"--reuse {src}: holds {meta['n_vectors']} vectors, not {n}")
    root.mkdir(parents=True)
    (root / "shards").symlink_to((src / "shards").resolve())
    meta.update(factory=factory, faiss=None, search_params="")
    (root / "index.json").write_text(json.dumps(meta))


def nlist_for(n: int) -> int:
    """default_factory's rule (power of two nearest sqrt(n)), also below its exact-search cut-off."""
    return int(min(65536, max(256, 2 ** round(math.log2(math.sqrt(n))))))


def fmt_bytes(b) -> str:
    if b is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(b) < 1000 or unit == "TB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.2f} {unit}"
        b /= 1000


def table(rows: list[dict]) -> str:
    head = ("N", "index", "nprobe", "cand.", "recall@1 rerank", "(cos<0.6)", "recall@1 codes", "cand. recall",
            "qps batch", "CPU ms/query", "latency ms (CPU)", "x exact qps", "RAM index", "x exact RAM",
            "train s (CPU)", "encode s (CPU)")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    exact = {r["n"]: r for r in rows if r["factory"].startswith("exact")}
    for r in rows:
        e = exact.get(r["n"], {})
        f = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        ratio_q = r["qps"] / e["qps"] if e.get("qps") else None
        ratio_m = r["ram_index"] / (r["n"] * args_dim * 4) if r.get("ram_index") else None
        out.append("| " + " | ".join([
            f"{r['n']:,}", r["factory"], str(r.get("nprobe", "-")), str(r.get("candidates", "-")), f(r.get("recall1_rerank")),
            f(r.get("recall1_rerank_cos<0.6")), f(r.get("recall1_codes")), f(r.get("cand_recall")),
            f(r["qps"], 1), f(r.get("cpu_ms_per_query"), 3),
            f"{f(r.get('latency_ms'), 2)} ({f(r.get('latency_cpu_ms'), 2)})", f(ratio_q, 1),
            fmt_bytes(r.get("ram_index")), f(ratio_m, 4), f"{f(r.get('train_s'), 1)} ({f(r.get('train_cpu_s'), 1)})",
            f"{f(r.get('encode_s'), 1)} ({f(r.get('encode_cpu_s'), 1)})"]) + " |")
    return "\n".join(out)


args_dim = 384


def main(argv=None) -> int:
    global args_dim
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000", help="comma-separated N (the README numbers: 100000,1000000 and 10000000)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--factory", default=None, help="FAISS factory (default: default_factory(N, d))")
    p.add_argument("--compare-factories", action="store_true",
                   help="run the candidate factories at each size instead of one")
    p.add_argument("--nprobe", default="16,64")
    p.add_argument("--candidates", default="10,100", help="re-ranked candidates per query (VectorIndex rerank)")
    p.add_argument("--shard-size", type=int, default=500_000)
    p.add_argument("--block", type=int, default=262_144, help="rows per step of the streamed exact search")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--latency-queries", type=int, default=100)
    p.add_argument("--train-sample", type=int, default=100_000)
    p.add_argument("--exact-ram", type=float, default=4e9, help="largest exact in-RAM baseline, bytes")
    p.add_argument("--exact-subset", type=int, default=100, help="queries for the streamed exact baseline")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/diffmem_bench_scale")
    p.add_argument("--keep", action="store_true", help="keep the index folders (a rerun resumes them)")
    p.add_argument("--reuse", default=None, metavar="INDEX",
                   help="take the simulated vectors from this kept index folder (same N, d, seed)")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--repeats", type=int, default=3, help="--extraction: runs of each step (best kept)")
    p.add_argument("--extraction", action="store_true",
                   help="instead: measure decode and descriptor frames/s on this CPU (one thread)")
    args = p.parse_args(argv)
    args.nprobe = [int(x) for x in args.nprobe.split(",")]
    args.candidates = [int(x) for x in args.candidates.split(",")]
    args_dim = args.dim
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    if args.extraction:
        rows = measure_extraction(args)
        print("| step | frames/s (1 thread, wall) | frames per CPU-second |\n|---|---|---|")
        for r in rows:
            print(f"| {r['step']} | {r['frames_per_s']:.1f} | {r['frames_per_cpu_s']:.1f} |")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    rows = []
    t0 = time.perf_counter()
    for n in [int(float(x)) for x in args.sizes.split(",")]:
        facs = CANDIDATES if args.compare_factories else [None]
        for fac in facs:
            rows += run_size(n, args, fac)
    print(table(rows))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB, "
          f"{faiss.omp_get_max_threads()} FAISS threads, d = {args.dim}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


# IMI (multi-index) was measured too: lower recall, and FAISS has it for L2 only (the index is inner product)
CANDIDATES = ["IVF1024,PQ48", "IVF1024,PQ96x4fs"]

if __name__ == "__main__":
    sys.exit(main())
