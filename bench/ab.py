"""Two kiln-bench runs side by side (say, without and with --quick-ptx, from one call on
the GPU machine): each benchmark both runs timed, its two medians and B's over A's.

usage: python3 bench/ab.py A.json B.json [A_LABEL B_LABEL]
"""
import json
import sys


def main(argv):
    if len(argv) not in (3, 5):
        sys.exit(__doc__.strip().splitlines()[-1])
    labels = argv[3:5] if len(argv) == 5 else ["A", "B"]
    runs = []
    for path in argv[1:3]:
        with open(path) as f:
            runs.append({b["name"]: b["median_us"] for b in json.load(f)["benchmarks"]})
    print(f"{'benchmark':26s} {labels[0] + ' us':>12s} {labels[1] + ' us':>12s} {'B/A':>6s}")
    for name, a in runs[0].items():
        if name in runs[1]:
            b = runs[1][name]
            print(f"{name:26s} {a:12.2f} {b:12.2f} {b / a if a > 0 else float('nan'):6.3f}")


if __name__ == "__main__":
    main(sys.argv)
