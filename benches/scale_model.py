#!/usr/bin/env python3
"""Scale model of a Quloud fabric: broker messages and bytes, fan-out, audits, heals, root records.

Run:  python3 benches/scale_model.py                  # the tables in docs/SCALE.md
      python3 benches/scale_model.py nodes=3000 outages_per_node_month=4

Any parameter below can be overridden as name=value. Standard library only. Every constant says
where it comes from; "assumed" marks a modelling choice, "estimate" a NATS-internal figure that
is not measured here. Sizes are bytes, times seconds unless the name says otherwise.
"""
import math
import sys

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

P = dict(
    # fabric shape (assumed)
    nodes=1000, vaults="50x100,40x500,10x2048",  # count x GiB per vault class
    leafs=0,               # leaf nats-servers; 0: one per node (a leaf at every site, one node per site)
    core=3,                # JetStream core cluster servers
    rtt=0.02,              # leaf site <-> hub round trip
    # code constants
    n=3,                   # replicas per chunk: cli.rs --replicas default 3
    js=3,                  # stream replicas on a cluster: Layout::stream_replicas (nats/mod.rs)
    chunk=655 * KiB,       # mean plaintext chunk measured (PERFORMANCE.md §1); AVG_CHUNK 512 KiB
    pull_expires=2.0,      # PULL_EXPIRES: each one-message fetch() (no_wait) waits 2 s, then 408 (nats/node.rs)
    pulls_per_node=8,      # store_loop: one pull waiting per free handler, store_concurrency 8 (NodeRunOptions::new, cli.rs)
    info_every=5.0,        # store_loop: consumer.info() at most every 5 s, when a pull came back empty (nats/node.rs)
    max_waiting=16384,     # STORE_MAX_WAITING, the store consumer's max_waiting (nats/mod.rs)
    pending_age_h=1.0,     # PENDING_MAX_AGE: max_age of the store and body streams, 1 h (nats/mod.rs)
    audit_days=1.0,        # HealthOptions::audit_interval 24 h (app/vault/health.rs)
    audit_batch=32,        # AUDIT_BATCH (app/vault/health.rs)
    leaves=4,              # AUDIT_LEAVES (nats/fabric.rs)
    pass_s=60,             # run_maintenance tick min(60 s, …) (app/vault/health.rs)
    lease_days=90,         # HealthOptions::lease; renewed with a third left -> every 60 days
    forget_after=3,        # REPLICA_FORGET_AFTER (domain/health.rs)
    write_off_after=8,     # NODE_WRITE_OFF_AFTER (domain/health.rs)
    snapshots_per_day=24,  # HealthOptions::snapshot_interval 1 h (app/vault/health.rs)
    listed=53,             # Retention{last 24, daily 30} (domain/snapshot.rs): ~53 kept
    blob_batch=8,          # FETCH_BATCH, pieces per get in fetch_blob (app/vault/snapshot.rs)
    manifest_per_chunk=331,  # dump bytes per chunk: chunk record 238 + extent 93 (domain/fs.rs)
    chunk_record=238,      # dump bytes of one chunk record with 3 replicas (47 + 3 x 50 + framing)
    store_max_bytes=GiB,   # Layout::default store_max_bytes (nats/mod.rs): store + body streams, Memory
    slot_cap=64 * MiB,     # STORE_MAX_BYTES: the store stream's share is min(store_max_bytes / 16, this)
    store_req=127,         # STORE_REQUEST_LEN (wire.rs): a store request, whatever the chunk size
    max_in_flight=64,      # FabricOptions::new max_in_flight, chunks per owner (nats/fabric.rs)
    # measured costs, one core (PERFORMANCE.md §2, §5)
    verify_us=105.0, prove_us=26.7,
    batch_a_us=430.0, batch_b_us=25.6,  # straight-line fit of batch_verify at 16/64/256 proofs
    heal_mib_s=104.0,      # heal phase, PERFORMANCE.md §5.0 run G
    mac_gib_s=3.55,        # keyed BLAKE3 (PERFORMANCE.md §1), the node's MAC over a stored body
    # not measured here (typical for ed25519-dalek on this class of CPU: estimate)
    ed_sign_us=20.0, ed_verify_us=50.0,
    # workload (assumed)
    change_per_day=0.01,   # new or changed data, fraction of each vault per day
    read_per_day=0.01,     # data read back from the fabric, fraction per day
    churn_per_day=0.01,    # nodes leaving for good per day (fraction of nodes)
    outages_per_node_month=1.0, outage_min=30.0,  # transient node outages
    offline_frac=0.03,     # fraction of time a node is unreachable (reboots, ISP)
    uplink_mbit=40.0, leader_gbit=10.0, cpu_budget=0.05,
    # NATS framing (estimate, from the text protocol): line, CRLFs, subject/reply lengths
    frame=30, inbox=51, jsack=90, msgid=107, raft=60, raft_resp=40, interest=40,
    slot_subj=14,          # quloud.v1.slot (STORE_SUBJECT, nats/mod.rs)
    pull_subj=57,          # $JS.API.CONSUMER.MSG.NEXT.QULOUD_SLOTS_V1.quloud-slots-v1
    pull_req=116,          # pull request JSON as async-nats 0.51 sends it for fetch(): batch 1, expires,
                           # no_wait, max_bytes 0, min_pending/min_ack_pending/group null
    status408=85,          # "NATS/1.0 408 Request Timeout" + pending headers, ending an expired pull (estimate)
    body_subj=79,          # quloud.v1.body.<64 hex> (body_subject, nats/mod.rs)
    dget_subj=115,         # $JS.API.DIRECT.GET.QULOUD_BODIES_V1.<body subject> (async-nats direct get)
    dget_hdr=211,          # direct get reply headers: Nats-Stream, -Subject, -Sequence, -Time-Stamp (estimate)
    mem_msg=16,            # per-message overhead of a memory stream besides subject and payload (estimate)
    direct_hop=0.0,        # share of direct gets answered on another server than the node's: every core
                           # server holds a replica at R3 on 3 servers, and any current replica answers
                           # (allow_direct, a queue group that prefers the local one) (estimate)
)


def frame(subject, reply=0, hdr=0, payload=0):
    """One NATS message on a connection: HPUB/HMSG line + headers + payload."""
    return P["frame"] + subject + reply + hdr + payload


def t_batch(k):
    """batch_verify of k proofs, µs (k = 1 is one verify, proof.rs)."""
    return P["verify_us"] if k <= 1 else min(k * P["verify_us"], P["batch_a_us"] + P["batch_b_us"] * k)


def vault_classes():
    return [(int(c), float(g)) for c, g in (v.split("x") for v in P["vaults"].split(","))]


def fmt(x):
    if isinstance(x, str):
        return x
    a = abs(x)
    for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g}" if a < 100 else f"{x:.0f}"


def table(title, head, rows):
    print(f"\n#### {title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(fmt(c) for c in r) + " |")


def main():
    for a in sys.argv[1:]:
        k, v = a.split("=", 1)
        P[k] = type(P[k])(v) if not isinstance(P[k], str) else v
    N, nodes, js, core = P["n"], P["nodes"], P["js"], P["core"]
    P["leafs"] = P["leafs"] or nodes
    L = P["chunk"] + 16                                  # ciphertext (seal.rs tag)
    cpg = GiB / P["chunk"]                               # chunks per GiB
    classes = vault_classes()
    vaults = sum(c for c, _ in classes)
    total_gib = sum(c * g for c, g in classes)
    per_node = total_gib * GiB * N / nodes
    hop = (core - 1) / core                              # client's server is not the leader
    day = 86400

    # ---------------- 0. the fabric
    rows = [(f"{c} × {g:.0f} GiB", c * g * cpg, g * cpg * N / nodes, g * cpg * P["manifest_per_chunk"])
            for c, g in classes]
    table("Fabric (derived)", ["vault class", "chunks per class", "replicas per node per vault",
                               "manifest dump per vault (B)"], rows)
    print(f"\ntotal {total_gib / 1024:.1f} TiB in {vaults} vaults, {total_gib * cpg:.3g} chunks, "
          f"{total_gib * cpg * N:.3g} replicas; per node {per_node / GiB:.0f} GiB, "
          f"{total_gib * cpg * N / nodes:.3g} replicas")

    # ---------------- 1. per stored GiB
    req = P["store_req"]                                 # StoreRequest (wire.rs), 127 B
    ack = 147                                            # StoreAck (wire.rs)
    ackrep = 105                                         # $JS.ACK.QULOUD_ACKS_V1.owner-<32 hex>.…
    bs, ss = P["body_subj"], P["slot_subj"]
    # (what, per: "chunk" once per store call or "slot" once per slot published, bytes), client/leaf links
    client = [
        ("body publish, owner → broker (raw ciphertext, once)", "chunk", frame(bs, P["inbox"], 0, L)),
        ("PubAck of the body → owner", "chunk", frame(P["inbox"], 0, 0, 46)),
        ("store request publish, owner → broker (127 B)", "slot", frame(ss, P["inbox"], P["msgid"], req)),
        ("PubAck → owner", "slot", frame(P["inbox"], 0, 0, 45)),
        ("pull request, node → broker (one message per pull)", "slot", frame(P["pull_subj"], P["inbox"], 0, P["pull_req"])),
        ("store request delivery → node (ends the pull)", "slot", frame(ss, P["jsack"], P["msgid"], req)),
        ("direct get of the body, node → broker", "slot", frame(P["dget_subj"], P["inbox"], 0, 0)),
        ("body → node (direct get reply)", "slot", frame(P["inbox"], 0, P["dget_hdr"], L)),
        ("StoreAck publish, node → broker", "slot", frame(46, P["inbox"], 0, ack)),
        ("PubAck → node", "slot", frame(P["inbox"], 0, 0, 44)),
        ("+ACK of the store request", "slot", frame(P["jsack"], 0, 0, 4)),
        ("ack delivery → owner", "slot", frame(46, ackrep, 0, ack)),
        ("+ACK of the ack", "slot", frame(ackrep, 0, 0, 4)),
        ("tombstone publish, owner → broker (empty)", "chunk", frame(bs, P["inbox"], 0, 0)),
        ("PubAck of the tombstone → owner (not awaited)", "chunk", frame(P["inbox"], 0, 0, 46)),
    ]

    def store_call(k):
        """(messages, bytes) on client/leaf links of one store call that publishes k slots."""
        n = lambda per: 1 if per == "chunk" else k
        return sum(n(per) for _, per, _ in client), sum(n(per) * b for _, per, b in client)

    # core cluster: raft appends to js-1 followers + responses (estimate, unbatched upper bound)
    small_props = 5                                      # consumer delivered+ack (x2 consumers), ack-stream append

    def store_routes(k):
        """(messages, bytes) on core routes of one store call publishing k slots (estimate)."""
        msgs = 4 * (js - 1) + hop * 4                    # body and tombstone appends + responses; their hops
        byt = ((js - 1) * (L + bs + P["raft"] + P["raft_resp"]) + (js - 1) * (bs + P["raft"] + P["raft_resp"])
               + hop * (L + bs + 60) + hop * (bs + 60) + hop * 2 * 100)
        msgs += k * ((js - 1) * 2 * (1 + small_props) + hop * 10 + P["direct_hop"] * 2)
        byt += k * ((js - 1) * (req + ss + P["msgid"] + P["raft"] + P["raft_resp"])
                    + small_props * (js - 1) * (P["raft"] + 60 + P["raft_resp"])
                    + hop * 2 * (req + 200) + hop * 8 * 150
                    + P["direct_hop"] * (L + P["dget_hdr"] + 200))
        return msgs, byt

    slots = cpg * N
    rows = [(w, (cpg if per == "chunk" else slots), (cpg if per == "chunk" else slots) * b) for w, per, b in client]
    call_msgs, call_bytes = store_call(N)
    rows.append(("**client/leaf links, total**", call_msgs * cpg, call_bytes * cpg))
    decline = (frame(ss, P["jsack"], P["msgid"], req) + frame(P["jsack"], 0, 0, 20)
               + frame(P["pull_subj"], P["inbox"], 0, P["pull_req"]) + 120)
    rows.append(("+ each declined slot (nak, the 127 B request redelivered elsewhere)", 3 * slots, decline * slots))
    r_msgs, r_bytes = store_routes(N)
    rows.append(("core routes: R3 appends, consumer state, hops (estimate)", r_msgs * cpg, r_bytes * cpg))
    rows.append(("interest changes: fresh inbox per pull × leafs", 2 * P["leafs"] * slots,
                 2 * P["leafs"] * slots * P["interest"]))
    table(f"Per stored GiB ({cpg:.0f} chunks × N={N} = {slots:.0f} replica slots), no declines",
          ["message", "messages", "bytes"], rows)
    uplink = cpg * (frame(bs, P["inbox"], 0, L) + N * frame(ss, P["inbox"], P["msgid"], req) + frame(bs, P["inbox"], 0, 0))
    slot_share = min(P["store_max_bytes"] / 16, P["slot_cap"])
    body_share = P["store_max_bytes"] - slot_share
    body_mem = bs + L + P["mem_msg"]                     # one pending body in the memory stream
    tomb_mem = bs + P["mem_msg"]                         # one tombstone, kept until it is pending_age_h old
    slot_mem = ss + P["msgid"] + req + P["mem_msg"]      # one pending store request
    bodies_fit = body_share / body_mem
    per_owner = P["max_in_flight"]
    print(f"\nowner uplink per GiB stored: {uplink / GiB:.2f} GiB (the body once, N requests of {req} B). "
          f"Body stream: {body_share / MiB:.0f} MiB in memory × R{js} = {bodies_fit:.0f} pending chunks fabric-wide "
          f"(a body is held once, whatever N), against {per_owner} chunks one uploading owner may have outstanding "
          f"({per_owner * body_mem / MiB:.0f} MiB): {bodies_fit / per_owner:.0f} owners fill it when nodes lag. "
          f"Store stream: {slot_share / MiB:.0f} MiB = {slot_share / slot_mem:.3g} pending slots. "
          f"A tombstone keeps {tomb_mem} B for {P['pending_age_h']:g} h. "
          f"Ack stream keeps {slots * (ack + 46 + 40) * js / MiB:.2f} MiB per stored GiB for 14 days (File, R{js})")

    # ---------------- 2. idle control plane of the shared store consumer
    def idle(nn):
        # every node keeps pulls_per_node one-message pulls waiting, each renewed when it expires;
        # beyond max_waiting the broker refuses a pull (409) or evicts the oldest (408), and
        # store_loop pulls again at once: the excess spins at the round-trip rate
        want = nn * P["pulls_per_node"]
        within = min(want, P["max_waiting"])
        pulls = within / P["pull_expires"] + max(0, want - P["max_waiting"]) / P["rtt"]
        return pulls, pulls * 2 * nn, pulls * 2 * (core - 1)
    rows = []
    full = P["max_waiting"] // P["pulls_per_node"]       # nodes whose pulls max_waiting still holds
    for nn in sorted({100, 300, 1000, full, 3000}):
        pulls, leaf_int, direct_int = idle(nn)
        rows.append((f"{nn:,}", pulls, nn / P["info_every"], leaf_int, direct_int))
    table(f"Idle store consumer (one durable, every node keeping {P['pulls_per_node']} one-message pulls "
          f"of {P['pull_expires']:g} s waiting; max_waiting {P['max_waiting']} holds {full} nodes)",
          ["nodes", "pull requests/s (+ as many 408s)", "consumer.info/s", "interest msgs/s, leaf per site",
           "interest msgs/s, nodes on core"], rows)
    groups = 5 + vaults + nodes                          # 4 streams + store consumer + ack + root consumers
    print(f"\nR{js} raft groups: {groups} ({nodes} node-roots consumers, {vaults} owner ack consumers); "
          f"idle heartbeats ≈ {groups * (js - 1) * 2:.0f} route msgs/s (1 s hbInterval, estimate)")

    # ---------------- 3. retrieval fan-out
    rows = []
    for k in (1, 8, 64):
        preq = 69 + 128 * k                              # ProvenRequest (wire.rs)
        node_us = t_batch(k) + k * P["verify_us"]        # dummy commitment fails the batch -> one by one
        rows.append((f"targeted, {k} addr", 1 + k, frame(83, P["inbox"], 0, preq)
                     + k * frame(P["inbox"], 0, 0, 71 + L), 2 * P["leafs"], t_batch(k) / 1e6, "—"))
        bc_bytes = nodes * frame(17, P["inbox"], 0, preq) + N * k * frame(P["inbox"], 0, 0, 71 + L)
        rows.append((f"broadcast, {k} addr", 1 + nodes + N * k, bc_bytes, 2 * P["leafs"],
                     nodes * node_us / 1e6, P["cpu_budget"] / (node_us / 1e6)))
    table("One get request (every holder answers a broadcast)",
          ["request", "data messages", "bytes", "interest msgs (inbox SUB+UNSUB)", "CPU-s, all nodes",
           f"broadcasts/s the fabric absorbs at {P['cpu_budget']:.0%} of a core per node"], rows)
    reads = sum(c * g for c, g in classes) * P["read_per_day"] * cpg / day
    rows = []
    for off in (0.01, 0.03, 0.10, 0.30):
        stale = off + P["churn_per_day"] * P["audit_days"] / 2
        pb = stale ** N
        rows.append((f"{off:.0%}", pb, reads * pb * day, reads * pb * nodes * 2 * P["verify_us"] / 1e6 * day))
    table(f"Reads falling back to broadcast ({reads:.1f} chunk reads/s fabric-wide, 3 hints each)",
          ["node offline fraction", "P(all N hints fail)", "broadcasts/day", "fabric CPU-s/day"], rows)

    # ---------------- 4. audits and renewals per day
    d = math.ceil(math.log2(math.ceil(L / 1024)))
    reply = 164 + P["leaves"] * (1035 + 32 * d)          # AuditReply (wire.rs)
    rows, tot = [], [0.0] * 4
    for c, g in classes:
        ch = g * cpg * N / P["audit_days"]
        due = ch * P["pass_s"] / day
        touched = nodes * (1 - math.exp(-due / nodes))
        b = max(1.0, min(P["audit_batch"], due / touched))
        reqs = ch / b
        byt = reqs * (frame(86, P["inbox"], 0, 3 + b * 223) + frame(P["inbox"], 0, 0, 3 + b * (4 + reply)))
        rows.append((f"{g:.0f} GiB vault", ch, f"{b:.1f}", reqs, byt))
        for i, x in enumerate((c * ch, c * reqs, c * byt, c * ch * t_batch(b) / b)):
            tot[i] += x
    rows.append(("**fabric, all vaults**", tot[0], "", tot[1], tot[2]))
    table(f"Audit traffic per day (AuditReply {reply} B: {P['leaves']} leaves, path depth {d})",
          ["vault", "challenges/day", "challenges per request", "requests/day", "bytes/day"], rows)
    per_node_ch = tot[0] / nodes
    node_cpu = per_node_ch * (tot[3] / tot[0] + P["ed_sign_us"]) / 1e6 + per_node_ch * L / (P["mac_gib_s"] * GiB)
    renew = total_gib * cpg * N / (P["lease_days"] * 2 / 3)
    print(f"\nper node per day: {per_node_ch:.3g} challenges, proof verification + signing + MAC ≈ "
          f"{node_cpu:.0f} CPU-s, {per_node_ch * L / GiB:.0f} GiB read from disk (whole stored copy each audit); "
          f"owner per 500 GiB vault: {500 * cpg * N * (P['prove_us'] + P['ed_verify_us']) / 1e6:.0f} CPU-s. "
          f"Renewals: {renew:.3g} replicas/day fabric-wide, ≈1 per request "
          f"({renew * (frame(85, P['inbox'], 0, 197) + frame(P['inbox'], 0, 0, 149)) / 1e9:.2f} GB/day)")

    # ---------------- 5. heal under churn
    up = P["uplink_mbit"] * 1e6 / 8
    rows = []
    for c, g in classes:
        share = g * GiB * N / nodes
        rows.append((f"{g:.0f} GiB vault", share, 2 * share, share / min(up, P["heal_mib_s"] * MiB) / 60,
                     P["churn_per_day"] * g * GiB * N))
    table(f"Heal after one node leaves for good (it held {per_node / GiB:.0f} GiB)",
          ["owner", "bytes re-stored", "owner link bytes (get + re-publish)", f"minutes at {P['uplink_mbit']:.0f} Mbit/s",
           f"owner uplink bytes/day at {P['churn_per_day']:.0%} churn"], rows)

    def write_off_min(g):
        r = g * cpg * N / P["audit_days"] / day * P["pass_s"] / nodes  # due per pass on this node
        fails, p = 0.0, 0
        while fails < P["write_off_after"] and p < 10000:
            p += 1
            fails += r * min(p, P["forget_after"])       # new due + re-challenges of failing replicas
        return p * P["pass_s"] / 60
    rows = []
    for t in (5, 15, 60, 360):
        b = sum(c * g * GiB * N / nodes * (1 if t >= write_off_min(g) else t / (P["audit_days"] * 1440))
                for c, g in classes)
        rows.append((f"{t} min", b, b / per_node))
    table("Re-replicated after a node is unreachable for a while, then returns "
          f"(write-off after {', '.join(f'{write_off_min(g):.0f}' for _, g in classes)} min for the classes)",
          ["outage", "bytes re-replicated", "fraction of the node"], rows)
    outages = nodes * P["outages_per_node_month"] / 30
    t = P["outage_min"]
    trans = outages * sum(c * g * GiB * N / nodes * (1 if t >= write_off_min(g) else t / 1440) for c, g in classes)
    perm = P["churn_per_day"] * nodes * per_node
    new = total_gib * GiB * P["change_per_day"] * N
    print(f"\nper day: permanent churn heals {perm / TiB:.2f} TiB; {outages:.0f} outages of {t:.0f} min heal "
          f"{trans / TiB:.2f} TiB; new data stores {new / TiB:.2f} TiB of replicas")

    # ---------------- 6. root records and snapshots
    rec = 149 + 132 * P["listed"]                        # root record (PROTOCOL.md 4.10)
    recs = vaults * P["snapshots_per_day"]
    manifest = total_gib * cpg * P["manifest_per_chunk"]
    touched = 1 - math.exp(-N / P["audit_days"] / P["snapshots_per_day"])   # chunk records audited per hour
    ctab = total_gib * cpg * P["chunk_record"] * (1 - (1 - touched) ** (P["chunk"] / P["chunk_record"]))
    fam = 500 * cpg * P["manifest_per_chunk"]
    rows = [
        ("root records published", recs, recs * frame(47, P["inbox"], 0, rec)),
        ("deliveries to node-roots consumers (+ as many acks)", recs * nodes, recs * nodes * frame(47, P["jsack"], 0, rec)),
        ("fetch_roots before each publish: node replies", recs * nodes, recs * nodes * frame(P["inbox"], 0, 0, 32 + rec)),
        ("fetch_roots: broker history (≤ 64 records)", recs * 64, recs * 64 * frame(47, 0, 0, rec)),
        ("snapshot pieces re-stored (chunk table each time)", recs * ctab / vaults / P["chunk"] * N,
         P["snapshots_per_day"] * ctab * N),
    ]
    table(f"Root records and snapshots per day ({P['snapshots_per_day']} snapshots/vault, record {rec} B)",
          ["what", "messages", "bytes"], rows)
    pieces = math.ceil(fam / P["chunk"])
    print(f"\nrestore of a 500 GiB vault: manifest {fam / 1e6:.0f} MB = {pieces} pieces -> "
          f"{math.ceil(pieces / P['blob_batch']) + 1} broadcasts (no hints) = "
          f"{(math.ceil(pieces / P['blob_batch']) + 1) * nodes * (t_batch(8) + 8 * P['verify_us']) / 1e6:.0f} CPU-s "
          f"fabric-wide, plus {nodes} root replies ({nodes * (32 + rec) / 1e6:.1f} MB). Snapshot chunk tables: "
          f"{touched:.1%} of records audited per hour -> {ctab / (total_gib * cpg * P['chunk_record']):.0%} of "
          f"pieces change; {P['listed']} kept snapshots pin {P['listed'] * ctab * N / 1e12:.1f} TB of replicas. "
          f"Each node verifies {recs * P['ed_verify_us'] / 1e6:.1f} CPU-s of root signatures per day")

    # ---------------- 7. fabric-wide per day
    get = frame(83, P["inbox"], 0, 197) + frame(P["inbox"], 0, 0, 71 + L)
    one_msgs, one_bytes = store_call(1)                  # a heal publishes the body and one slot
    heal = one_bytes + get                               # owner fetches a copy, then re-publishes it
    snap = P["snapshots_per_day"] * ctab * N
    new_chunks, snap_chunks = new / (L * N), snap / (L * N)
    healed = (perm + trans) / L                          # one store call (body + 1 slot) per healed replica
    idle_pulls = idle(nodes)[0] * day
    rows = [
        (f"new data ({P['change_per_day']:.0%} of every vault)", new_chunks * call_msgs, new_chunks * call_bytes),
        (f"heal, permanent churn {P['churn_per_day']:.0%}/day", perm / L * (one_msgs + 2), perm / L * heal),
        (f"heal, {outages:.0f} outages of {t:.0f} min", trans / L * (one_msgs + 2), trans / L * heal),
        ("snapshots (hourly chunk-table rewrite)", snap_chunks * call_msgs, snap_chunks * call_bytes),
        ("audits + renewals", 2 * (tot[1] + renew), tot[2] + renew * 350),
        ("root records + fetch_roots", 2 * recs * nodes * 2, recs * nodes * 2 * (rec + 150)),
        (f"reads ({P['read_per_day']:.0%}/day), targeted", reads * day * 2, reads * day * get),
        ("idle store polling: pulls + 408s", 2 * idle_pulls,
         idle_pulls * (frame(P["pull_subj"], P["inbox"], 0, P["pull_req"]) + frame(P["inbox"], 0, P["status408"]))),
        ("interest changes (leaf per site): idle polling", idle(nodes)[1] * day, idle(nodes)[1] * day * P["interest"]),
    ]
    table(f"Fabric-wide per day, client/leaf links (the core's R3 replication adds ~{r_bytes / call_bytes:.1f}× "
          "the store bytes)", ["traffic", "messages/day", "bytes/day"], rows)

    # ---------------- 8. the store streams' leaders
    leader = P["leader_gbit"] * 1e9 / 8
    # Body stream leader: in 1× per body; out js-1 replication copies, plus the direct gets it answers.
    # Any current replica answers a direct get; spread evenly, the leader answers k/core of a body's k reads.
    out = lambda k: (js - 1) + k / core                  # egress per body byte, k slots read it
    ceiling = leader / out(N)                            # owner data (bodies) per second, uploads of N slots
    demand = ((new_chunks + snap_chunks) * out(N) + healed * out(1)) * L / day
    bodies_day = new_chunks + snap_chunks + healed
    kept = P["pending_age_h"] / 24                       # share of a day's tombstones still within max_age
    tombs = bodies_day * kept * tomb_mem
    fill = body_share / tomb_mem / kept                  # store calls per day whose tombstones fill the stream
    print(f"\nbody stream leader, {P['leader_gbit']:.0f} Gbit/s: egress {js - 1} replication copies + "
          f"{N / core:.2g} direct-get reply per body (the N reads spread over {core} replicas) -> ceiling ≈ {ceiling / 1e6:.0f} MB/s of owner data "
          f"({leader / (js - 1 + N) / 1e6:.0f} MB/s if the leader answered every direct get); average demand "
          f"(new data, heals, snapshots) ≈ {demand / 1e6:.0f} MB/s of leader egress ({demand / leader:.0%}); "
          f"{ceiling / up:.0f} owners uploading at {P['uplink_mbit']:.0f} Mbit/s saturate it. "
          f"Store stream leader: {slot_mem} B per slot in, {js} copies out: "
          f"{(new_chunks + snap_chunks) * N + healed:.3g} slots/day. "
          f"Bodies published per day: {bodies_day:.3g}; the tombstones of the last {P['pending_age_h']:g} h hold at least "
          f"{tombs / MiB:.0f} MiB of the body stream's {body_share / MiB:.0f} MiB ({tombs / body_share:.1%}; new data "
          f"alone {new_chunks * kept * tomb_mem / MiB:.1f} MiB); they fill it at {fill:.3g} store calls/day "
          f"({fill / bodies_day:.0f}× these)")


if __name__ == "__main__":
    main()
