"""The per-rank table `moe generate` prints at the end of a distributed run (format_rank_table in
runtime/rank_stats.cpp): one row per rank with its rank, host, device, resident and weight MiB,
tokens, compute and wait seconds, MiB sent and received, then the tokens of each sparse layer."""
import re

ROW = re.compile(r"^(\d+) +(\S+) +(\S+) +([0-9.]+) +([0-9.]+) +(\d+) +([0-9.]+) +([0-9.]+) +([0-9.]+)"
                 r" +([0-9.]+)(?:  ([0-9 ]*))?$", re.M)


def rank_rows(text):
    """Every row of the table in `text` (a run's output), in order, as a dict."""
    return [{"rank": int(m[1]), "host": m[2], "device": m[3], "rss_mib": float(m[4]),
             "weights_mib": float(m[5]), "tokens": int(m[6]), "compute_s": float(m[7]),
             "wait_s": float(m[8]), "sent_mib": float(m[9]), "received_mib": float(m[10]),
             "tokens_per_layer": [int(t) for t in (m[11] or "").split()]}
            for m in ROW.finditer(text)]
