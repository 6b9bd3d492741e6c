#!/usr/bin/env python3
"""Picks at most BUDGET corpus files from a libFuzzer merge control file: greedily, the file
adding the most new coverage edges first, then the most new features. For targets whose
coverage is noisy (threads), where -set_cover_merge keeps too many files.

    <target binary> -merge=1 -merge_control_file=CTL EMPTY_DIR corpus/<target>
    fuzz/cover_budget.py CTL BUDGET > keep.txt    # one path per line

Prints the coverage kept on stderr.
"""

import sys


def main() -> None:
    ctl, budget = sys.argv[1], int(sys.argv[2])
    lines = open(ctl).read().split("\n")
    n = int(lines[0])
    paths = lines[2 : 2 + n]
    ft: dict[int, set[int]] = {}
    cov: dict[int, set[int]] = {}
    for line in lines[2 + n :]:
        p = line.split()
        if p and p[0] in ("FT", "COV"):
            (ft if p[0] == "FT" else cov)[int(p[1])] = set(map(int, p[2:]))
    all_ft = set().union(*ft.values()) if ft else set()
    all_cov = set().union(*cov.values()) if cov else set()
    chosen: list[int] = []
    have_ft: set[int] = set()
    have_cov: set[int] = set()
    rest = set(range(n))
    while rest and len(chosen) < budget:
        gain = lambda i: (len(cov.get(i, set()) - have_cov), len(ft.get(i, set()) - have_ft))
        best = max(sorted(rest), key=gain)
        if gain(best) == (0, 0):
            break
        chosen.append(best)
        rest.discard(best)
        have_ft |= ft.get(best, set())
        have_cov |= cov.get(best, set())
    print("\n".join(paths[i] for i in chosen))
    print(
        f"{len(chosen)} of {n} files: {len(have_cov)} of {len(all_cov)} edges, "
        f"{len(have_ft)} of {len(all_ft)} features",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
