#!/usr/bin/env python3
"""Scale benchmarks of imgform, side by side with its floors and twins.

Run through benches/scale_bench.sh (which builds the release binary), or
directly:  benches/scale.py --bin PATH [--base-bin PATH] [--rounds 5] CASE...

Cases (default: all):
  plan      no-change `plan --refresh=false`, N=1,000 and N=10,000: wall time
            and peak RSS, the N-scaling ratio, answered from the plan cache
            and in full (the plan cache removed first, as after an edit),
            and at N=1,000 an apply with nothing to do, the floors over
            the same input files (`sha256sum`, a `find -printf` stat
            walk), imgform with a cold cache
            (--no-cache), and the Terraform twin (`terraform plan
            -refresh=false`) when `terraform` is installed.
  apply     first apply, N=200 and N=2,000 (null builder), and N=1,000 vs
            the Terraform twin's first apply.
  tree      a 200 MiB tree (2,000 files of 100 KiB, a module folder):
            unchanged re-plan (from the plan cache, and in full with the
            file-hash cache and the tree's cached nodes), a re-plan after
            one file was touched, vs a stat walk; cold plan (--no-cache)
            vs sha256sum.
  upload    the same tree uploaded by a `file` provisioner into a chroot
            build (busybox root filesystem, `tar` output): imgform's peak
            RSS, which must not grow with the tree. Needs root; not in the
            default cases.

Work dirs are made under $TMPDIR (default /tmp). A first apply creates a
few files per image; on a disk filesystem that has just deleted many files
(earlier runs), the filesystem's inode allocator can dominate:
TMPDIR=/dev/shm measures imgform alone.

Every measurement is a median of alternating runs (each round runs every
command of a comparison once, in rotating order), so drift of the machine
hits all sides alike. Ratios are what to compare across machines.

The workload is the one of benches/plan_bench.sh: N `null` images, 5 scripts
of ~2.5 KB each, every tenth image a child of the one before. The Terraform
twin: one `terraform_data` per image whose `triggers_replace` holds the
`filesha256()` of its 5 scripts (and the parent's id for children), using
only the builtin provider (no download).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FILLER = "\n".join(f"# configuration line {i}: " + "x" * 60 for i in range(40))


def generate(n, d, terraform=False, tf_exec=False):
    os.makedirs(f"{d}/scripts", exist_ok=True)
    with open(f"{d}/images.pkr.hcl", "w") as f:
        for i in range(n):
            f.write(f'source "null" "img{i}" {{\n  communicator = "none"\n}}\n')
        for i in range(n):
            scripts = []
            for j in range(5):
                p = f"scripts/img{i}-{j}.sh"
                with open(f"{d}/{p}", "w") as s:
                    s.write(f"#!/bin/sh\n{FILLER}\ntrue # {i}-{j}\n")
                # Executable, as scripts kept in git usually are (and as
                # Packer's default execute_command needs them).
                os.chmod(f"{d}/{p}", 0o755)
                scripts.append(f'"{p}"')
            env = ""
            if i % 10 == 9:
                env = f'\n    environment_vars = ["PARENT=${{image.null.img{i-1}.id}}"]'
            f.write(
                f'build {{\n  sources = ["source.null.img{i}"]\n  provisioner "shell-local" {{\n'
                f'    scripts = [{", ".join(scripts)}]{env}\n  }}\n}}\n'
            )
    if terraform:
        tf = f"{d}/tf"
        os.makedirs(tf, exist_ok=True)
        with open(f"{tf}/main.tf", "w") as f:
            for i in range(n):
                triggers = ", ".join(f'filesha256("../scripts/img{i}-{j}.sh")' for j in range(5))
                if i % 10 == 9:
                    triggers += f", terraform_data.img{i-1}.id"
                run = ""
                if tf_exec:
                    # The twin that also runs the 5 scripts, as imgform's
                    # shell-local provisioner does.
                    run = "".join(
                        f'  provisioner "local-exec" {{\n    command = "sh ../scripts/img{i}-{j}.sh"\n  }}\n'
                        for j in range(5)
                    )
                f.write(f'resource "terraform_data" "img{i}" {{\n  triggers_replace = [{triggers}]\n{run}}}\n')


def input_files(d):
    return sorted(
        os.path.join(d, "scripts", name) for name in os.listdir(os.path.join(d, "scripts"))
    )


def run_once(cmd, cwd=None, env=None):
    """Wall seconds and peak RSS (MiB) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, shell=isinstance(cmd, str)
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        sys.exit(f"command failed ({code}): {cmd}")
    return wall, usage.ru_maxrss / 1024


def compare(commands, rounds):
    """Runs every (name, cmd, cwd, env) once per round, rotating the order.
    Returns {name: (median wall, median rss)}."""
    walls = {c[0]: [] for c in commands}
    rss = {c[0]: [] for c in commands}
    for r in range(rounds):
        order = commands[r % len(commands):] + commands[: r % len(commands)]
        for name, cmd, cwd, env in order:
            w, m = run_once(cmd, cwd, env)
            walls[name].append(w)
            rss[name].append(m)
    return {n: (statistics.median(walls[n]), statistics.median(rss[n])) for n in walls}


def full_plan(b, d):
    """A plan that cannot be answered from the plan cache (removed first;
    the file-hash cache stays): the cost of a plan after an edit."""
    return f"rm -f {d}/.imgform/cache/plan && exec {b} -C {d} plan --refresh=false --detailed-exitcode"


def tf_env():
    env = dict(os.environ)
    env["TF_CLI_CONFIG_FILE"] = "/dev/null"
    env["TF_IN_AUTOMATION"] = "1"
    env["CHECKPOINT_DISABLE"] = "1"
    return env


def row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |")


def header(*cells):
    row(*cells)
    row(*(["---"] + ["---:"] * (len(cells) - 1)))


def bench_plan(args, bins):
    print("\n### Plan, no change (`plan --refresh=false`)\n")
    dirs = {}
    for n in (1000, 10000):
        for name, b in bins.items():
            # A workload per binary: each records its own state.
            d = tempfile.mkdtemp(prefix=f"imgform-bench-plan{n}-{name}.")
            generate(n, d, terraform=(n == 1000 and args.terraform and name == "imgform"))
            # Recorded by the binary under test (an older one may take very
            # long for a first apply of 10,000: that is what issue 16 fixed).
            subprocess.run([bins["imgform"], "-C", d, "apply", "--auto-approve", "--parallelism", "16"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            dirs[(n, name)] = d
    # Let the file-hash cache written by apply age past its racy window,
    # then warm it once.
    time.sleep(2.5)
    for (n, name), d in dirs.items():
        run_once([bins[name], "-C", d, "plan", "--refresh=false"])
    # Both sizes and every binary in the same rounds: the N-ratio is taken
    # under the same conditions as the binaries' ratio.
    first = next(iter(bins))
    cmds = [((n, name), [b, "-C", dirs[(n, name)], "plan", "--refresh=false", "--detailed-exitcode"], None, None)
            for n in (1000, 10000) for name, b in bins.items()]
    # The same binary planning in full: its plan cache removed first (the
    # file-hash cache stays), so every image is loaded and fingerprinted.
    cmds += [((n, f"{first}, full plan"), full_plan(bins[first], dirs[(n, first)]), None, None)
             for n in (1000, 10000)]
    both = compare(cmds, args.rounds)
    names = [first, f"{first}, full plan"] + [name for name in bins if name != first]
    results = {n: {name: both[(n, name)] for name in names} for n in (1000, 10000)}
    header("binary", "N=1,000 wall (s)", "N=1,000 RSS (MiB)", "N=10,000 wall (s)", "N=10,000 RSS (MiB)", "10,000 / 1,000")
    for name in names:
        a, b = results[1000][name], results[10000][name]
        row(name, f"{a[0]:.3f}", f"{a[1]:.0f}", f"{b[0]:.3f}", f"{b[1]:.0f}", f"{b[0] / a[0]:.2f}×")

    # Floors and twins at N=1,000, with the first binary.
    name, b = next(iter(bins.items()))
    d = dirs[(1000, name)]
    files = input_files(d)
    listing = f"{d}/files.txt"
    with open(listing, "w") as f:
        f.write("\n".join(files) + "\n")
    cmds = [
        ("imgform plan (cache)", [b, "-C", d, "plan", "--refresh=false"], None, None),
        ("imgform plan, full (plan cache removed)", full_plan(b, d), None, None),
        ("imgform apply with nothing to do", [b, "-C", d, "apply", "--auto-approve", "--refresh=false"], None, None),
        ("imgform plan --no-cache", [b, "-C", d, "plan", "--refresh=false", "--no-cache"], None, None),
        ("sha256sum of the inputs", f"xargs -a {listing} sha256sum > /dev/null", None, None),
        ("stat walk of the inputs", f"find {d}/scripts -type f -printf '%s %T@ %C@\\n' > /dev/null", None, None),
    ]
    if args.terraform:
        env = tf_env()
        tf = f"{d}/tf"
        subprocess.run(["terraform", "init", "-input=false"], cwd=tf, env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["terraform", "apply", "-auto-approve", "-input=false", "-parallelism=16"], cwd=tf, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        cmds.append(("terraform plan -refresh=false", ["terraform", "plan", "-refresh=false", "-input=false",
                                                        "-detailed-exitcode"], tf, env))
    res = compare(cmds, args.rounds)
    print(f"\nN=1,000, {len(files)} input files, `{name}`:\n")
    base = res["imgform plan (cache)"][0]
    header("command", "wall (s)", "vs imgform plan (cache)")
    for cname, (w, _) in res.items():
        row(cname, f"{w:.3f}", f"{w / base:.2f}×")
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)


def bench_apply(args, bins):
    print("\n### First apply (null builder)\n")
    sizes = (200, 2000)
    header("binary", *(f"N={n} wall (s)" for n in sizes), "2,000 / 200")
    for name, b in bins.items():
        # Small runs before and after each large one, so a machine whose
        # load changes meanwhile affects both sides of the ratio alike.
        walls = {n: [] for n in sizes}
        for _ in range(args.apply_rounds):
            for n in (sizes[0], sizes[1], sizes[0]):
                d = tempfile.mkdtemp(prefix=f"imgform-bench-apply{n}.")
                generate(n, d)
                w, _ = run_once([b, "-C", d, "apply", "--auto-approve"])
                walls[n].append(w)
                shutil.rmtree(d, ignore_errors=True)
        med = {n: statistics.median(walls[n]) for n in sizes}
        row(name, *(f"{med[n]:.2f}" for n in sizes), f"{med[2000] / med[200]:.2f}×")
    if args.terraform:
        name, b = next(iter(bins.items()))
        env = tf_env()
        print("\nN=1,000 first apply, imgform vs its Terraform twin (`terraform apply`, default parallelism 10):\n")
        header("workload", "imgform (s)", "terraform (s)", "terraform / imgform")
        for label, tf_exec in (("scripts as inputs only (Terraform does not run them)", False),
                               ("both run the 5 scripts of every image (local-exec)", True)):
            d = tempfile.mkdtemp(prefix="imgform-bench-apply-tf.")
            generate(1000, d, terraform=True, tf_exec=tf_exec)
            tf = f"{d}/tf"
            subprocess.run(["terraform", "init", "-input=false"], cwd=tf, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            w_tf, _ = run_once(["terraform", "apply", "-auto-approve", "-input=false"], tf, env)
            w_im, _ = run_once([b, "-C", d, "apply", "--auto-approve"])
            row(label, f"{w_im:.2f}", f"{w_tf:.2f}", f"{w_tf / w_im:.1f}×")
            shutil.rmtree(d, ignore_errors=True)
        print()


def write_tree(root):
    """2,000 files of 100 KiB in 20 folders under `root`."""
    block = os.urandom(100 * 1024)
    for i in range(2000):
        sub = f"{root}/d{i // 100}"
        os.makedirs(sub, exist_ok=True)
        with open(f"{sub}/f{i}", "wb") as f:
            f.write(block[i % 97:] + block[: i % 97])


def bench_tree(args, bins):
    print("\n### A 200 MiB tree (2,000 files, a module folder) hashed by plan\n")
    d = tempfile.mkdtemp(prefix="imgform-bench-tree.")
    write_tree(f"{d}/tree")
    # A module folder is hashed whole, like a `file` provisioner's source
    # dir (which needs a machine to plan against a null source).
    with open(f"{d}/tree/module.hcl", "w") as f:
        f.write('provisioner "shell-local" {\n  inline = ["true"]\n}\n')
    with open(f"{d}/images.pkr.hcl", "w") as f:
        f.write('source "null" "t" {\n  communicator = "none"\n}\n'
                'build {\n  sources = ["source.null.t"]\n'
                '  module "tree" {\n    source = "tree"\n  }\n}\n')
    # Each binary plans its own copies (caches of two versions would not
    # share a file): one unchanged, one where a file is touched each time.
    dirs = {}
    for name in bins:
        for kind in ("same", "touched"):
            w = dirs[(name, kind)] = f"{d}/{name}-{kind}"
            os.makedirs(w)
            for entry in ("tree", "images.pkr.hcl"):
                subprocess.run(["cp", "-a", f"{d}/{entry}", w], check=True)
    for _ in range(2):
        for (name, _), w in dirs.items():
            run_once([bins[name], "-C", w, "plan", "--refresh=false"])
        time.sleep(2.5)
    cmds = []
    for name, b in bins.items():
        w, t = dirs[(name, "same")], dirs[(name, "touched")]
        cmds += [
            (f"{name} plan (cache)", [b, "-C", w, "plan", "--refresh=false"], None, None),
            (f"{name} plan, full (plan cache removed)", full_plan(b, w), None, None),
            (f"{name} plan, one file of the tree touched",
             f"touch {t}/tree/d3/f333 && exec {b} -C {t} plan --refresh=false", None, None),
        ]
    name, b = next(iter(bins.items()))
    w = dirs[(name, "same")]
    cmds += [
        (f"{name} plan --no-cache", [b, "-C", w, "plan", "--refresh=false", "--no-cache"], None, None),
        ("sha256sum of the tree", f"find {w}/tree -type f -print0 | xargs -0 sha256sum > /dev/null", None, None),
        ("stat walk of the tree", f"find {w}/tree -type f -printf '%s %T@ %C@\\n' > /dev/null", None, None),
    ]
    res = compare(cmds, args.rounds)
    base = res["stat walk of the tree"][0]
    header("command", "wall (s)", "peak RSS (MiB)", "vs stat walk")
    for cname, (w, m) in res.items():
        row(cname, f"{w:.3f}", f"{m:.0f}", f"{w / base:.2f}×")
    shutil.rmtree(d, ignore_errors=True)


def bench_upload(args, bins):
    print("\n### Uploading the 200 MiB tree (chroot builder, `file` provisioner)\n")
    if os.geteuid() != 0:
        print("skipped: the chroot builder needs root\n")
        return
    d = tempfile.mkdtemp(prefix="imgform-bench-upload.")
    write_tree(f"{d}/tree")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([f"{here}/../scripts/make-busybox-rootfs.sh", f"{d}/rootfs/busybox.tar.gz"], check=True,
                   stdout=subprocess.DEVNULL)
    with open(f"{d}/images.pkr.hcl", "w") as f:
        f.write('source "chroot" "up" {\n  base   = "rootfs/busybox.tar.gz"\n  format = "tar"\n}\n'
                'build {\n  sources = ["source.chroot.up"]\n'
                '  provisioner "file" {\n    source      = "tree/"\n    destination = "/opt/tree"\n  }\n}\n')
    header("binary", "apply wall (s)", "imgform peak RSS (MiB)", "tree (MiB)")
    for name, b in bins.items():
        # A fresh build each time: --replace rebuilds the image.
        walls, peaks = [], []
        for r in range(args.apply_rounds):
            cmd = [b, "-C", d, "apply", "--auto-approve"] + (["--replace", "chroot.up"] if r or name != "imgform" else [])
            w, m = run_once(cmd)
            walls.append(w)
            peaks.append(m)
        row(name, f"{statistics.median(walls):.2f}", f"{max(peaks):.0f}", "200")
    shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="imgform binary to measure")
    ap.add_argument("--base-bin", help="another imgform binary (e.g. the last release) measured side by side")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per comparison (default 5)")
    ap.add_argument("--apply-rounds", type=int, default=1, help="runs per first-apply size (default 1)")
    ap.add_argument("--no-terraform", dest="terraform", action="store_false")
    ap.add_argument("cases", nargs="*", default=["plan", "apply", "tree"],
                    help="plan, apply, tree, upload (default: plan apply tree)")
    args = ap.parse_args()
    if args.terraform and not shutil.which("terraform"):
        print("terraform not found: skipping the Terraform twin", file=sys.stderr)
        args.terraform = False
    bins = {"imgform": os.path.abspath(args.bin)}
    if args.base_bin:
        bins["base"] = os.path.abspath(args.base_bin)
    print(f"imgform scale benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}")
    for case in args.cases:
        {"plan": bench_plan, "apply": bench_apply, "tree": bench_tree, "upload": bench_upload}[case](args, bins)


if __name__ == "__main__":
    main()
