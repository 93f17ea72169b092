#!/usr/bin/env python3
"""Expert-parallel planning model for ds4serve (docs/PARALLEL.md): from the per-step costs measured
on one H200 (docs/PERFORMANCE.md, "Full-size speed on one H200", commit cae2c3b, 4K context, q2) and
assumed link bandwidths, estimate per decode step and rank: bytes moved, communication time, step
time and speed-up for world sizes 1-64, with attention replicated (all-reduce of the routed sum) or
data-parallel (all-to-all dispatch / combine, the CPU reference's form; or "dp-gather", the CUDA
backend's all-gather of the rows + reduce-scatter of the sums), on NVLink inside one host and
InfiniBand across hosts.

A planning model, not a measurement: every constant below says where it comes from. Routing is
uniform random (6 of 256 experts per token, per layer), which is what the synthetic model does;
real routing is skewed, which makes the busiest rank slower (see --skew).

    python3 scripts/ep_sim.py                 # the tables of docs/PARALLEL.md
    python3 scripts/ep_sim.py --scenario roof # the same with kernels at the roofline targets
Standard library only.
"""
import argparse
import math
import random

N_LAYER, N_EXPERT, TOPK, N_EMBD = 43, 256, 6, 4096

# Measured on one H200 (PERFORMANCE.md "Latest", decode sweep at 4K, commit cae2c3b): batch ->
# (step ms, routed experts read per step summed over the 43 layers).
MEASURED = {1: (16.12, 258), 2: (19.13, 507), 4: (24.40, 988), 8: (34.24, 1886), 16: (54.85, 3403),
            32: (89.03, 5657), 64: (136.33, 8239), 128: (203.41, 10111), 256: (328.18, 10886)}

# Grouped routed-expert products per layer, measured back to back (PERFORMANCE.md "Products ...
# round 2", commit ea81e09, activation planes; 2048 tokens from c96774d's run, planes off there):
# tokens -> (distinct experts, routes, gate µs, down µs); a layer runs gate, up (same shape as
# gate) and down.
PRODUCTS = {1: (6, 6, 29.7, 34.8), 8: (43, 48, 154.9, 182.4), 64: (200, 384, 638.2, 764.0),
            256: (256, 1536, 853.0, 1005.0), 2048: (256, 12288, 4738.0, 4912.0)}

# Roofline scenario: the targets of issue 10 (80% of the 4258 GB/s copy peak for bytes; an assumed
# 400 TFLOP/s for the products at large batch).
ROOF_BW = 0.8 * 4258e9
ROOF_FLOPS = 400e12
EXPERT_BYTES = {"q2": 7.08e6, "q4": 14.16e6}  # gate + up + down of one expert (MODEL.md 5.1)
DENSE_BYTES = 7.74e9                          # everything but the routed experts, per step (MODEL.md 5.1)
DENSE_FLOP_PER_TOKEN = 2 * 6.77e9             # non-routed active parameters x 2
EXPERT_FLOP_PER_ROUTE = 2 * 25.17e6           # one expert's gate + up + down, per routed token

# Links (assumed from vendor figures, not measured here): bytes/s per GPU per direction and the
# fixed cost of one collective call.
LINKS = {
    "nvlink": {"bw": 360e9, "lat_us": 12.0},  # NVLink 4 (450 GB/s per direction), NCCL bus bandwidth without NVLS
    "ib": {"bw": 45e9, "lat_us": 25.0},       # InfiniBand NDR 400 Gb/s, one NIC per GPU
}


def fit_routed_cost():
    """Least-squares fit of one layer's routed time: a*experts + b*routes + c (µs)."""
    rows = [(e, r, 2 * g + d) for e, r, g, d in PRODUCTS.values()]
    # normal equations for 3 unknowns
    sums = [[0.0] * 4 for _ in range(3)]
    for e, r, t in rows:
        x = (e, r, 1.0)
        for i in range(3):
            for j in range(3):
                sums[i][j] += x[i] * x[j]
            sums[i][3] += x[i] * t
    m = [row[:] for row in sums]
    for i in range(3):  # Gauss-Jordan
        p = m[i][i]
        m[i] = [v / p for v in m[i]]
        for k in range(3):
            if k != i:
                f = m[k][i]
                m[k] = [a - f * b for a, b in zip(m[k], m[i])]
    return m[0][3], m[1][3], max(m[2][3], 0.0)


class Costs:
    """Per-layer routed time and per-step dense time for one scenario."""

    def __init__(self, scenario, quant):
        self.scenario, self.quant = scenario, quant
        self.a, self.b, self.c = fit_routed_cost()

    def routed_us(self, experts, routes):
        if self.scenario == "roof":
            t_bytes = experts * EXPERT_BYTES[self.quant] / ROOF_BW
            t_flop = routes * EXPERT_FLOP_PER_ROUTE / ROOF_FLOPS
            return 1e6 * max(t_bytes, t_flop)
        scale = 2.0 if self.quant == "q4" else 1.0  # q4 experts: twice the bytes (PERFORMANCE.md: Q4_K gate ~1.0-1.6x)
        return scale * self.a * experts + self.b * routes + (self.c if experts else 0.0)

    def dense_ms(self, batch):
        """Everything but the routed experts for `batch` sequences (one token each)."""
        if batch == 0:
            return 0.0
        if self.scenario == "roof":
            return 1e3 * max(DENSE_BYTES / ROOF_BW, batch * DENSE_FLOP_PER_TOKEN / ROOF_FLOPS)
        return interp_loglog({b: self.measured_dense(b) for b in MEASURED}, batch)

    def measured_dense(self, batch):
        step_ms, experts = MEASURED[batch]
        routed_ms = N_LAYER * self.routed_us(experts / N_LAYER, TOPK * batch) / 1e3
        if self.quant == "q4":  # the measured step is q2: remove q2's routed time, add q4's
            routed_ms = N_LAYER * Costs("now", "q2").routed_us(experts / N_LAYER, TOPK * batch) / 1e3
        return max(step_ms - routed_ms, 0.2 * step_ms)


def interp_loglog(table, x):
    keys = sorted(table)
    if x <= keys[0]:
        return table[keys[0]]
    if x >= keys[-1]:
        return table[keys[-1]] * x / keys[-1]
    for lo, hi in zip(keys, keys[1:]):
        if lo <= x <= hi:
            f = (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return math.exp(math.log(table[lo]) + f * (math.log(table[hi]) - math.log(table[lo])))
    raise AssertionError


def expert_owner(expert, world):
    """Rank owning an expert: contiguous ranges of n_expert / world (parallel/expert_shard.h)."""
    return expert * world // N_EXPERT


def sample_layer(batch, world, rng, skew):
    """One layer's routing: per rank distinct experts and routes, and per token its expert ranks."""
    weights = [1.0 / (1 + e) ** skew for e in range(N_EXPERT)] if skew > 0 else None
    experts = [set() for _ in range(world)]
    routes = [0] * world
    token_ranks = []
    for _ in range(batch):
        if weights:
            chosen = set()
            while len(chosen) < TOPK:
                chosen.add(rng.choices(range(N_EXPERT), weights)[0])
        else:
            chosen = rng.sample(range(N_EXPERT), TOPK)
        ranks = set()
        for e in chosen:
            r = expert_owner(e, world)
            experts[r].add(e)
            routes[r] += 1
            ranks.add(r)
        token_ranks.append(ranks)
    return [len(s) for s in experts], routes, token_ranks


def link_for(world, gpus_per_host):
    return LINKS["nvlink"] if world <= gpus_per_host else LINKS["ib"]


def allreduce_us(nbytes, world, gpus_per_host):
    """Ring all-reduce (hierarchical across hosts: NVLink reduce-scatter, IB all-reduce of a shard,
    NVLink all-gather). Returns (µs, bytes sent per rank over NVLink, over InfiniBand)."""
    if world == 1:
        return 0.0, 0, 0
    nv = LINKS["nvlink"]
    if world <= gpus_per_host:
        sent = 2 * (world - 1) / world * nbytes
        return nv["lat_us"] + 1e6 * sent / nv["bw"], sent, 0
    hosts = world // gpus_per_host
    local = 2 * (gpus_per_host - 1) / gpus_per_host * nbytes
    shard = nbytes / gpus_per_host
    ib_sent = 2 * (hosts - 1) / hosts * shard
    t = 2 * nv["lat_us"] + 1e6 * local / nv["bw"] + LINKS["ib"]["lat_us"] + 1e6 * ib_sent / LINKS["ib"]["bw"]
    return t, local, ib_sent


def alltoall_us(token_ranks, home, world, gpus_per_host, bytes_per_token):
    """Dispatch (bf16 inputs) or combine (outputs) of data-parallel tokens: the busiest rank's bytes
    out over its links. Returns (µs, the busiest rank's bytes out over NVLink, over InfiniBand)."""
    if world == 1:
        return 0.0, 0, 0
    out_nv = [0] * world
    out_ib = [0] * world
    for ranks, h in zip(token_ranks, home):
        for r in ranks:
            if r == h:
                continue
            if r // gpus_per_host == h // gpus_per_host:
                out_nv[h] += bytes_per_token
            else:
                out_ib[h] += bytes_per_token
    t = max(1e6 * (out_nv[r] / LINKS["nvlink"]["bw"] + out_ib[r] / LINKS["ib"]["bw"]) for r in range(world))
    lat = LINKS["ib"]["lat_us"] if world > gpus_per_host else LINKS["nvlink"]["lat_us"]
    busiest = max(range(world), key=lambda r: out_nv[r] + out_ib[r])
    return lat + t, out_nv[busiest], out_ib[busiest]


def simulate(costs, batch, world, mode, gpus_per_host, skew, trials=2, seed=1):
    """Mean step (ms), comm (ms), compute (ms) and (NVLink, InfiniBand) bytes sent per rank per step."""
    rng = random.Random(seed)
    step = comm = nv_bytes = ib_bytes = 0.0
    for _ in range(trials):
        routed_ms = comm_ms = 0.0
        home = [i % world for i in range(batch)]  # data-parallel: sequence i lives on rank i % world
        for _ in range(N_LAYER):
            experts, routes, token_ranks = sample_layer(batch, world, rng, skew)
            routed_ms += max(costs.routed_us(e, r) for e, r in zip(experts, routes)) / 1e3
            if mode == "replicated":
                t, nv, ib = allreduce_us(batch * N_EMBD * 4, world, gpus_per_host)  # f32 routed sums
            elif mode == "dp-gather":
                # the CUDA backend's form: all-gather of the f32 rows (blocks padded to the busiest
                # rank) and reduce-scatter of the f32 routed sums: together the bytes and (twice)
                # the latency of a ring all-reduce of the padded batch
                padded = math.ceil(batch / world) * world
                t, nv, ib = allreduce_us(padded * N_EMBD * 4, world, gpus_per_host)
                t += link_for(world, gpus_per_host)["lat_us"]
            else:
                t1, nv1, ib1 = alltoall_us(token_ranks, home, world, gpus_per_host, N_EMBD * 2)  # bf16 dispatch
                t2, nv2, ib2 = alltoall_us(token_ranks, home, world, gpus_per_host, N_EMBD * 4)  # f32 combine
                t, nv, ib = t1 + t2, nv1 + nv2, ib1 + ib2
            comm_ms += t / 1e3
            nv_bytes += nv
            ib_bytes += ib
        local = batch if mode == "replicated" else math.ceil(batch / world)
        dense = costs.dense_ms(local)
        step += dense + routed_ms + comm_ms
        comm += comm_ms
    n = trials
    return step / n, comm / n, (step - comm) / n, (nv_bytes / n, ib_bytes / n)


def table(costs, batches, worlds, mode, gpus_per_host, skew):
    print(f"\n### {mode} attention, scenario '{costs.scenario}', {costs.quant}, {gpus_per_host} GPUs per host"
          + (f", skew {skew}" if skew else ""))
    print("\n| B | " + " | ".join(f"W={w}" for w in worlds) + " |")
    print("|---:|" + "---|" * len(worlds))
    for b in batches:
        base, _, _, _ = simulate(costs, b, 1, mode, gpus_per_host, skew)
        cells = []
        for w in worlds:
            s, c, _, sent = simulate(costs, b, w, mode, gpus_per_host, skew)
            ib = f" + IB {sent[1] / 1e6:.1f}" if sent[1] else ""
            cells.append(f"{s:.1f} ms {base / s:.2f}x, comm {c:.2f} ms, {sent[0] / 1e6:.1f} MB{ib}")
        print(f"| {b} | " + " | ".join(cells) + " |")


def network_limit(costs, mode, world, gpus_per_host, skew):
    """Smallest batch (powers of two up to 2048) where the communication time reaches the compute
    time of the step (so even perfect overlap leaves the step network-bound), or None."""
    b = 1
    while b <= 2048:
        _, c, comp, _ = simulate(costs, b, world, mode, gpus_per_host, skew, trials=1)
        if c >= comp:
            return b
        b *= 2
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=["now", "roof"], default="now")
    ap.add_argument("--quant", choices=["q2", "q4"], default="q2")
    ap.add_argument("--gpus-per-host", type=int, default=8)
    ap.add_argument("--skew", type=float, default=0.0, help="Zipf exponent of expert popularity (0: uniform)")
    args = ap.parse_args()
    costs = Costs(args.scenario, args.quant)
    print(f"routed cost fit per layer: {costs.a:.2f} us/expert + {costs.b:.3f} us/route + {costs.c:.1f} us")
    print("\ncheck against the measured steps (W=1, replicated):")
    for b, (ms, _) in MEASURED.items():
        s, _, _, _ = simulate(Costs("now", "q2"), b, 1, "replicated", 8, 0.0, trials=1)
        print(f"  B={b}: measured {ms} ms, model {s:.1f} ms")
    batches = [1, 16, 64, 256]
    worlds = [2, 4, 8, 16, 32]
    for mode in ("replicated", "data-parallel", "dp-gather"):
        table(costs, batches, worlds, mode, args.gpus_per_host, args.skew)
    print("\n### batch at which communication time >= compute time (network-bound even with overlap)\n")
    print("| mode | " + " | ".join(f"W={w}" for w in worlds) + " |")
    print("|---|" + "---|" * len(worlds))
    for mode in ("replicated", "data-parallel", "dp-gather"):
        cells = [str(network_limit(costs, mode, w, args.gpus_per_host, args.skew) or "> 2048") for w in worlds]
        print(f"| {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
