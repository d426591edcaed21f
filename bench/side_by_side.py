"""kiln beside PyTorch: reads kiln-bench's JSON and the results ../shared/bench/torch_anchors.py
writes ($OUT/torch_anchors.json), both from one call on the GPU machine, and prints one line
per benchmark: kiln's median, PyTorch's best variant and its time, the bytes floor at the
copy bandwidth PyTorch measured in that call, and kiln's time over the floor.

usage: python3 bench/side_by_side.py KILN_BENCH.json TORCH_ANCHORS.json
"""
import json
import math
import sys


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    with open(argv[1]) as f:
        kiln = json.load(f)
    with open(argv[2]) as f:
        torch = json.load(f)
    bandwidth = torch["bw"]  # bytes a second, read + written
    best = {}
    for r in torch["results"]:
        if r["graph"] not in best or r["us"] < best[r["graph"]]["us"]:
            best[r["graph"]] = r
    print(f"kiln on {kiln['device']}; copy bandwidth {bandwidth / 1e12:.2f} TB/s (PyTorch, same call)")
    print(f"{'benchmark':26s} {'kiln us':>10s} {'PyTorch best':>30s} {'floor us':>9s} {'kiln/floor':>10s}")
    for b in kiln["benchmarks"]:
        floor = b["floor_bytes"] / bandwidth * 1e6
        anchor = best.get(b["anchor"])
        theirs = f"{anchor['us']:.2f} ({anchor['variant']})" if anchor else "-"
        ratio = b["median_us"] / floor if floor > 0 else math.nan
        print(f"{b['name']:26s} {b['median_us']:10.2f} {theirs:>30s} {floor:9.2f} {ratio:10.2f}")


if __name__ == "__main__":
    main(sys.argv)
