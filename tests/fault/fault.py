#!/usr/bin/env python3
"""Fault-injection tests (ctest label `fault`): fault.py COMMAND.

Environment: BIN = folder of the dsv4-<config> binaries, SRC = source root, WORK = scratch folder,
W4 = the golden tiny checkpoint converted for tiny4 (the dist_w4 fixture of tests/distributed).
Every job runs with a deadline, so a hang fails the test instead of blocking the suite. Exit 77: skipped
(the reason is printed).
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

BIN, SRC, WORK = os.environ["BIN"], os.environ["SRC"], os.environ["WORK"]
GOLDEN = f"{SRC}/tests/golden/tiny/golden"
CKPT = f"{SRC}/tests/golden/tiny/tiny_ckpt"
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def skip(msg):
    print(f"SKIP: {msg}", flush=True)
    sys.exit(77)


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def mpi_rank(pid):
    """The MPI rank of a process launched by mpirun (from its environment), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(kv.split(b"=", 1)[1])
    except OSError:
        pass
    return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def find_ranks(job, n, timeout=60):
    """{rank: pid} of the n ranks of an mpirun started as `job` (a Popen)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        ranks = {}
        for c in children(job.pid):
            r = mpi_rank(c)
            if r is not None:
                ranks[r] = c
        if len(ranks) == n:
            return ranks
        if job.poll() is not None:
            fail(f"the job ended (exit {job.returncode}) before its {n} ranks were found")
        time.sleep(0.05)
    fail(f"did not find the {n} ranks")


def wait_for(path, job, timeout=120):
    t0 = time.time()
    while not os.path.exists(path):
        if job.poll() is not None:
            fail(f"the job ended (exit {job.returncode}) before {path} appeared")
        if time.time() - t0 > timeout:
            fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def no_survivors(pids, what):
    for _ in range(100):
        if not any(alive(p) for p in pids):
            return
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    fail(f"{what}: processes {left} survive the job (killed now)")


def long_eval(tag, n_req=8, steps=250, env_extra=None):
    """tiny4 eval: n_req len250 prompts, `steps` greedy decode steps, step files to follow progress."""
    out = f"{WORK}/{tag}"
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    args = []
    for i in range(n_req):
        args += ["--input-ids", f"{GOLDEN}/len250/input_ids.npy", "--forced-tokens", "-", "--logits-out", f"{out}/r{i}.npy"]
    env = dict(os.environ, **(env_extra or {}))
    xs = sum((["-x", k] for k in (env_extra or {})), [])
    cmd = MPIRUN + xs + ["-np", "4", f"{BIN}/dsv4-tiny4", "eval", "-w", os.environ["W4"], *args,
                         "--decode-steps", str(steps), "--step-logits-out", f"{out}/steps", "--report-json", f"{out}/report.json"]
    log = open(f"{out}/job.log", "w")
    job = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return job, out


def finish(job, limit, what):
    try:
        job.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        return None
    return job.returncode


def show(path, n=8):
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    for line in lines[-n:]:
        print(f"  | {line}")
    return "\n".join(lines)


# ---- a rank stopped (SIGSTOP) mid-step: the watchdog of the others names it and ends the job ----------
def stall():
    deadline = 5
    job, out = long_eval("stall", env_extra={"DSV4_COLLECTIVE_TIMEOUT": str(deadline)})
    ranks = find_ranks(job, 4)
    wait_for(f"{out}/steps/step-00003-rank-00000.npy", job)
    victim = 2
    t0 = time.time()
    os.kill(ranks[victim], signal.SIGSTOP)
    rc = finish(job, deadline + 60, "stall")
    dt = time.time() - t0
    print(f"SIGSTOP of rank {victim} (pid {ranks[victim]}) with DSV4_COLLECTIVE_TIMEOUT={deadline}: "
          f"mpirun exit {rc} after {dt:.1f} s")
    text = show(f"{out}/job.log")
    for p in ranks.values():  # leave nothing stopped behind, whatever happened
        if alive(p):
            os.kill(p, signal.SIGCONT)
    if rc is None:
        fail("the job hung past the deadline + 60 s (killed)")
    if rc == 0:
        fail("the job exited 0")
    if dt > deadline + 25:
        fail(f"took {dt:.1f} s (deadline {deadline} s + 25 s)")
    pat = (rf"rank [013]: error: collective watchdog: \w+ #\d+ did not complete within {deadline} s; "
           rf"no message from rank\(s\) [0-9, ]*; rank\(s\) {victim} did not answer")
    if not re.search(pat, text):
        fail(f"no watchdog message naming rank {victim} (/{pat}/)")
    no_survivors(ranks.values(), "stall")


# ---- a rank stopped for less than the deadline: no false alarm, results unchanged ----------------------
def pause():
    deadline, paused = 8, 3
    ref, rout = long_eval("pause_ref", n_req=4, steps=24)
    if finish(ref, 120, "ref") != 0:
        show(f"{rout}/job.log")
        fail("the undisturbed job failed")
    job, out = long_eval("pause", n_req=4, steps=24, env_extra={"DSV4_COLLECTIVE_TIMEOUT": str(deadline)})
    ranks = find_ranks(job, 4)
    wait_for(f"{out}/steps/step-00002-rank-00000.npy", job)
    os.kill(ranks[1], signal.SIGSTOP)
    time.sleep(paused)
    os.kill(ranks[1], signal.SIGCONT)
    rc = finish(job, 120, "pause")
    print(f"rank 1 stopped for {paused} s with DSV4_COLLECTIVE_TIMEOUT={deadline}: mpirun exit {rc}")
    show(f"{out}/job.log", 3)
    if rc != 0:
        fail("a pause shorter than the deadline ended the job")
    for i in range(4):
        with open(f"{rout}/r{i}.npy", "rb") as a, open(f"{out}/r{i}.npy", "rb") as b:
            if a.read() != b.read():
                fail(f"request {i}: logits differ from the undisturbed job")
    print("  logits identical to the undisturbed job")


# ---- SIGTERM during `eval`: every rank ends, no half-written output ------------------------------------
# to_ranks False: to mpirun (an interactive Ctrl-C / kill of the launcher; mpirun forwards it);
# True: to every rank at once (a service manager or batch system stopping the job's processes);
# "one": to rank 2 alone (its stop flag reaches rank 0 with its next step's token records).
def sigterm_run(to_ranks=False):
    job, out = long_eval("sigterm")
    ranks = find_ranks(job, 4)
    wait_for(f"{out}/steps/step-00003-rank-00000.npy", job)
    t0 = time.time()
    if to_ranks == "one":
        os.kill(ranks[2], signal.SIGTERM)
    elif to_ranks:
        for p in ranks.values():
            os.kill(p, signal.SIGTERM)
    else:
        job.send_signal(signal.SIGTERM)
    rc = finish(job, 60, "sigterm")
    dt = time.time() - t0
    who = {"one": "rank 2 alone", True: "every rank", False: "mpirun"}[to_ranks]
    print(f"SIGTERM to {who} mid-decode: exit {rc} after {dt:.1f} s")
    text = show(f"{out}/job.log")
    if rc is None:
        fail("mpirun did not end within 60 s of SIGTERM (killed)")
    if dt > 15:
        fail(f"took {dt:.1f} s (limit 15)")
    if to_ranks and rc != 143:  # mpirun passes on the ranks' own status (143: stopped by SIGTERM)
        fail(f"exit {rc}, expected 143 from the ranks")
    no_survivors(ranks.values(), "sigterm")
    if os.path.exists(f"{out}/report.json"):
        try:
            json.load(open(f"{out}/report.json"))
        except ValueError:
            fail("report.json is half-written")
    for i in range(8):
        p = f"{out}/r{i}.npy"
        if os.path.exists(p):
            fail(f"{p} exists: an interrupted job wrote a request's output (requests had 250 steps to go)")
    # A clean exit: no rank is reported dead of a signal (mpirun names such ranks). When mpirun itself
    # gets the signal it ends the ranks without that report, so this bites in the to_ranks case: each
    # rank must handle SIGTERM (abandon or finish the step, leave with an exit status) itself.
    killed = re.findall(r"exited on signal (\d+)|killed by signal|terminated by signal", text)
    if killed:
        fail("ranks were killed by the signal instead of exiting cleanly "
             "(the engine loop must end at a step boundary on SIGTERM): " + str(killed[:3]))


# ---- conversion interrupted: nothing under the final name; a later conversion succeeds ----------------
def convert_interrupted():
    base = f"{WORK}/convkill"
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    final = f"{base}/w"
    landed = 0
    for sig in (signal.SIGKILL, signal.SIGTERM):
        for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
            p = subprocess.Popen([f"{BIN}/dsv4-tiny", "convert", "--hf", CKPT, "-o", final],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # Wait until the converter has written something next to the final name (its temporary
            # output), then wait `delay` more and send the signal.
            t0 = time.time()
            while p.poll() is None and len(os.listdir(base)) == 0 and time.time() - t0 < 30:
                time.sleep(0.001)
            time.sleep(delay)
            p.send_signal(sig)
            p.wait(timeout=30)
            mid = p.returncode == -sig
            landed += mid
            print(f"  {signal.Signals(sig).name} after +{delay * 1000:.0f} ms: "
                  f"{'interrupted' if mid else f'finished first (exit {p.returncode})'}; entries: {sorted(os.listdir(base))}")
            if mid and os.path.exists(final):
                fail(f"{final} exists after the converter was killed by {signal.Signals(sig).name}")
            if not mid and p.returncode == 0:
                shutil.rmtree(final)
    if landed == 0:
        fail("no signal landed during a conversion; the test did not test anything")
    r = subprocess.run([f"{BIN}/dsv4-tiny", "convert", "--hf", CKPT, "-o", final], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.isdir(final):
        fail(f"conversion after interrupted ones failed (exit {r.returncode}): {r.stderr[-500:]}")
    print(f"{landed} of 10 signals landed mid-conversion; none left the final name; a later conversion succeeds")


def tree_hash(d):
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        h.update(name.encode())
        with open(f"{d}/{name}", "rb") as f:
            h.update(f.read())
    return h.hexdigest()


# ---- disk full during conversion: clear error, input untouched, nothing under the final name ----------
def convert_disk_full():
    base = f"{WORK}/convfull"
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    before = tree_hash(CKPT)
    ran = 0

    def check(name, cmd, pat, final):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        err = r.stderr.strip().splitlines()
        print(f"  {name}: exit {r.returncode}: {err[-1] if err else ''}")
        if r.returncode == 0:
            fail(f"{name}: the conversion succeeded")
        if r.returncode < 0:
            fail(f"{name}: the converter died of signal {-r.returncode}")
        if not re.search(pat, r.stderr):
            fail(f"{name}: error does not match /{pat}/: {r.stderr[-400:]}")
        if os.path.exists(final):
            fail(f"{name}: {final} exists")

    # A small tmpfs: the free-space check refuses before writing.
    mnt = f"{base}/tmpfs"
    os.makedirs(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], capture_output=True, text=True)
    if m.returncode == 0:
        try:
            check("tmpfs of 4 MiB", [f"{BIN}/dsv4-tiny", "convert", "--hf", CKPT, "-o", f"{mnt}/w"],
                  r"not enough free space|No space left", f"{mnt}/w")
            ran += 1
        finally:
            subprocess.run(["umount", mnt])
    else:
        print(f"  tmpfs case skipped: mount failed ({m.stderr.strip()})")
    # A file size limit (ulimit -f, 4 MiB): the free-space check passes, a write fails mid-file.
    check("ulimit -f 4096", ["bash", "-c", f'ulimit -f 4096 && exec "$0" "$@"', f"{BIN}/dsv4-tiny", "convert",
                             "--hf", CKPT, "-o", f"{base}/w"],
          r"write failed|File too large|No space left", f"{base}/w")
    ran += 1
    if tree_hash(CKPT) != before:
        fail("the input checkpoint changed")
    print(f"{ran} disk-full cases: clear error, input unchanged (sha256 of every file), no output")


if __name__ == "__main__":
    os.makedirs(WORK, exist_ok=True)
    cmds = {"stall": stall, "pause": pause, "sigterm-run": sigterm_run,
            "sigterm-ranks": lambda: sigterm_run(to_ranks=True),
            "sigterm-one-rank": lambda: sigterm_run(to_ranks="one"),
            "convert-interrupted": convert_interrupted, "convert-disk-full": convert_disk_full}
    t = time.time()
    cmds[sys.argv[1]]()
    print(f"ok ({time.time() - t:.1f} s)")
