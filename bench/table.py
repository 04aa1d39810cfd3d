#!/usr/bin/env python3
"""Prints the fan-out results (results.jsonl from fanout.sh) as Markdown tables with the
moment/nginx ratios. Usage: table.py results.jsonl"""
import json
import sys


def fmt(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    print("| fixture | N | server | load1 | CPU s | CPU ms / player-s | CPU s / GB | RSS idle MB | RSS end MB | RSS / player KB | complete | 1st video ms med / p99 | 1st keyframe ms med / p99 | frame delay spread ms med / p99 / max |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['fixture']} | {r['players']} | {r['server']} | {r['load1']:.2f} | {fmt(r.get('server_cpu_s'), 2)} "
              f"| {fmt(r.get('server_cpu_ms_per_player_s'), 3)} | {fmt(r.get('server_cpu_s_per_gb'))} "
              f"| {r['server_rss_idle_kb'] / 1024:.1f} | {r['server_rss_end_kb'] / 1024:.1f} "
              f"| {fmt(r.get('server_rss_per_player_kb'))} | {r['complete']}/{r['active']} "
              f"| {fmt(r.get('ttff_median_ms'))} / {fmt(r.get('ttff_p99_ms'))} "
              f"| {fmt(r.get('ttfk_median_ms'))} / {fmt(r.get('ttfk_p99_ms'))} "
              f"| {fmt(r.get('delay_spread_median_ms'))} / {fmt(r.get('delay_spread_p99_ms'))} / {fmt(r.get('delay_spread_max_ms'))} |")
    pairs = {}
    for r in rows:
        pairs.setdefault((r["fixture"], r["players"]), {})[r["server"]] = r
    print()
    print("moment / nginx (below 1 = moment uses less):")
    print()
    print("| fixture | N | CPU per player-s | CPU per GB | RSS per player | RSS total at end | 1st video median | 1st keyframe median | complete moment / nginx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def ratio(a, b, key):
        x, y = a.get(key), b.get(key)
        if x is None or y is None or y == 0:
            return "-"
        v = x / y
        return f"{v:.2f}" if v >= 0.01 else f"{v:.1e}"

    for (fix, n), p in pairs.items():
        if "moment" not in p or "nginx" not in p:
            continue
        m, g = p["moment"], p["nginx"]
        print(f"| {fix} | {n} | {ratio(m, g, 'server_cpu_ms_per_player_s')} | {ratio(m, g, 'server_cpu_s_per_gb')} "
              f"| {ratio(m, g, 'server_rss_per_player_kb')} | {ratio(m, g, 'server_rss_end_kb')} "
              f"| {ratio(m, g, 'ttff_median_ms')} | {ratio(m, g, 'ttfk_median_ms')} "
              f"| {m['complete']}/{m['active']} vs {g['complete']}/{g['active']} |")


if __name__ == "__main__":
    main(sys.argv[1])
