"""The README's internet-scale plan, derived from the measured 10 M run (README, "Plan for internet scale").

    python benchmarks/scale_plan.py        # reads benchmarks/results/scale_{10m,extraction}.json

The two JSON files are what `bench_scale.py --sizes 10000000 --json ...` and `--extraction --json ...`
wrote on the development machine; rerun those to re-derive the plan from your own hardware.
"""
import json
from pathlib import Path

from diffmem.index.sharded import default_factory, memory_estimate

H = Path(__file__).parent / "results"
rows = json.loads((H / "scale_10m.json").read_text())
ext = {r["step"].split(",")[0] + ("/1fps" if "1 fps" in r["step"] else ""): r
       for r in json.loads((H / "scale_extraction.json").read_text())}
r = next(x for x in rows if x.get("nprobe") == 64 and x.get("candidates") == 10)
N0, D, NLIST0 = r["n"], 384, 4096
enc_us = r["encode_cpu_s"] / N0 * 1e6                       # CPU-us per vector, measured
mac_rate = N0 * NLIST0 * D / r["encode_cpu_s"]               # assignment MAC per CPU-second (upper bound)
print(f"measured 10M: train {r['train_cpu_s']:.1f} CPU-s, encode {r['encode_cpu_s']:.1f} CPU-s "
      f"= {enc_us:.1f} CPU-us/vector (assignment alone {mac_rate / 1e9:.1f} GMAC per CPU-s)")
# published: FAISS wiki 'Low level benchmarks': k-means 1M x 256-d to 20000 centroids, 25 iterations =
# 1.28e14 multiply-adds in 55 s on one P100 (float32)
P100 = 1e6 * 256 * 20000 * 25 / 55
print(f"P100 k-means rate {P100 / 1e12:.2f} TMAC/s = {P100 / mac_rate:.0f} CPU cores of this machine")
# latency model from the measured single-query latencies: a + b * codes scanned
lat = {x["nprobe"]: x["latency_ms"] for x in rows if x.get("candidates") == 10 and "nprobe" in x}
cpuq = {x["nprobe"]: x["cpu_ms_per_query"] for x in rows if x.get("candidates") == 10 and "nprobe" in x}
lo, hi = min(lat), max(lat)
per_list = N0 / NLIST0
b = (lat[hi] - lat[lo]) / ((hi - lo) * per_list)
a = lat[lo] - b * lo * per_list
print(f"latency model: {a:.3f} ms + {b * 1e6:.2f} ns per code scanned (nprobe {lo}..{hi} at 10M)")
for n in (10 ** 7, 10 ** 9):
    for d in (384, 512):
        f = default_factory(n, d)
        m = memory_estimate(n, d, f)
        print(f"N={n:.0e} d={d}: {f}: RAM {m['ram_index'] / 1e9:.2f} GB, exact vectors on disk {m['disk_vectors'] / 1e12:.3f} TB")
    nlist = int(default_factory(n, D).split(",")[0][3:])
    scale = nlist / NLIST0                                   # assignment cost per vector grows with nlist
    enc = n * enc_us * scale / 1e6
    train = r["train_cpu_s"] * scale ** 2                    # k-means on 64 * nlist samples: ~ nlist^2
    gpu_enc = n * nlist * D / P100
    gpu_train = 64 * nlist * nlist * D * 25 / P100
    print(f"  d=384 build: encode {enc / 3600:.2f} CPU-h ({gpu_enc / 60:.1f} P100-min), "
          f"train {train / 3600:.2f} CPU-h ({gpu_train / 60:.1f} P100-min)")
    for nprobe in sorted({64, int(round(64 * scale))}):
        codes = nprobe * n / nlist
        coarse_ms = (nlist - NLIST0) * D / mac_rate * 1e3  # the intercept holds the 10M coarse step
        print(f"  query nprobe={nprobe}: {codes / 1e6:.2f} M codes, ~{a + b * codes + coarse_ms:.2f} ms "
              f"(one query, before reading candidates from disk)")
    for step, key in (("decode 25 fps video sampled at 1 fps", "decode 640x360 H.264/1fps"),
                      ("built-in descriptor", "built-in descriptor (384-d) on 512x288 frames"),
                      ("ResNet-50 / SSCD fp32", "ResNet-50 (SSCD trunk) fp32 on 512x288 frames")):
        print(f"  {step}: {n / ext[key]['frames_per_cpu_s'] / 3600:,.0f} CPU-h")
    # published: ResNet-50 v1.5 inference, 1x V100 16GB, mixed precision, batch 256, 224x224: 3382 img/s
    # (NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5); cost taken ~ pixels
    v100 = 3382 * 224 * 224 / (512 * 288)
    print(f"  SSCD on GPU: {v100:.0f} frames/s per V100 (assumed) -> {n / v100 / 3600:,.1f} V100-h")
