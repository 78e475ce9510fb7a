#!/usr/bin/env python3
"""Runs one bare-metal test guest in vireo-vmm and checks its result (docs/guest.md).

Exit status: 0 pass, 1 fail, 77 skip (x86-64 only: /dev/kvm absent; CTest's SKIP_RETURN_CODE).

  run_guest.py --vmm VMM (--kernel GUEST.elf | --bios GUEST.bin) [--append STR]
               [--device SPEC]... [--blk-image] [--expect-output TEXT]... [--input TEXT]
               [--timeout S]

--kernel runs an x86-64 guest on KVM; --bios runs a riscv64 guest (guest/runtime/riscv64) on
vireo-vmm --arch riscv64, vireo's own RV64 emulator, which needs no /dev/kvm.

--blk-image creates a scratch disk image (marker in sector 0, which blk_test.cpp checks) and
substitutes its path for {image} in --device specs; after the run it checks that the sector
range the guest wrote (sector=, seed= in --append) holds the guest's pattern.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

SKIP = 77
SECTOR = 512
IMAGE_BYTES = 1 << 20
MARKER = b"VIREO-GUEST-IMAGE"
BLK_BYTES = 4096  # what blk_test.cpp writes


def append_opt(append, key, default):
    for word in append.split():
        if word.startswith(key + "="):
            return int(word.split("=", 1)[1], 0)
    return default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", required=True)
    image = ap.add_mutually_exclusive_group(required=True)
    image.add_argument("--kernel", help="x86-64 guest ELF (KVM)")
    image.add_argument("--bios", help="riscv64 guest flat binary (vireo-vmm --arch riscv64)")
    ap.add_argument("--append", default="")
    ap.add_argument("--device", action="append", default=[])
    ap.add_argument("--blk-image", action="store_true")
    ap.add_argument("--expect-output", action="append", default=[])
    ap.add_argument("--input", default=None)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--vmm-arg", action="append", default=[],
                    help="extra vireo-vmm argument (e.g. --no-irqfd, --stats)")
    a = ap.parse_args()

    if a.kernel and not os.path.exists("/dev/kvm"):
        print("SKIP: /dev/kvm absent")
        return SKIP

    with tempfile.TemporaryDirectory(prefix="vireo-guest-") as tmp:
        image = os.path.join(tmp, "disk.img")
        if a.blk_image:
            with open(image, "wb") as f:
                f.write(MARKER + bytes(SECTOR - len(MARKER)))
                f.truncate(IMAGE_BYTES)
        if a.kernel:
            cmd = [a.vmm, "--kernel", a.kernel]
        else:
            cmd = [a.vmm, "--arch", "riscv64", "--bios", a.bios]
        cmd += ["--timeout", str(a.timeout)]
        if a.append:
            cmd += ["--append", a.append]
        for d in a.device:
            cmd += ["--device", d.replace("{image}", image)]
        cmd += a.vmm_arg
        print("+", " ".join(cmd), flush=True)
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, input=(a.input or "").encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=a.timeout + 10)
        except subprocess.TimeoutExpired as e:
            sys.stdout.write((e.stdout or b"").decode(errors="replace"))
            print(f"FAIL: vireo-vmm did not finish within {a.timeout + 10:.0f} s")
            return 1
        elapsed = time.monotonic() - start
        out = p.stdout.decode(errors="replace")
        sys.stdout.write(out)
        print(f"vireo-vmm exit status {p.returncode} after {elapsed:.2f} s")
        if p.returncode != 0:
            # 1 and 2 are also vireo-vmm's setup / usage errors: its stderr (above) tells.
            print(f"FAIL: exit status {p.returncode}: " +
                  ("guest failure code (or vireo-vmm setup/usage error)" if p.returncode < 124
                   else "VM failure, timeout or signal"))
            return 1
        for text in a.expect_output:
            if text not in out:
                print(f"FAIL: output lacks {text!r}")
                return 1
        if a.blk_image:
            sector = append_opt(a.append, "sector", 8)
            seed = append_opt(a.append, "seed", 0x5A)
            with open(image, "rb") as f:
                f.seek(sector * SECTOR)
                got = f.read(BLK_BYTES)
            want = bytes((i * 31 + seed) & 0xFF for i in range(BLK_BYTES))
            if got != want:
                print(f"FAIL: image sectors {sector}.. do not hold the guest's pattern")
                return 1
            print(f"host: image sectors {sector}..{sector + BLK_BYTES // SECTOR - 1} verified")
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
