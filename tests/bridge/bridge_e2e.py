#!/usr/bin/env python3
"""Two bare-metal guests (two zones, two vireo-vmm --bridge processes) served by one `vireo run`
daemon through the hypervisor bridge (docs/bridge.md).

  bridge_e2e.py --vireo VIREO --vmm VMM --blk BLK.elf --net NET.elf

1. blk in both zones at once; each image holds its own guest's pattern afterwards.
2. net between the zones through the daemon's switch (peer=recv / peer=send).
3. zone 1 waits for a frame while zone 2's vireo-vmm is SIGKILLed mid-run, restarted (blk
   passes again: the daemon reset its devices) and then sends the frame zone 1 waits for.

Exit status: 0 pass, 1 fail, 77 skip (/dev/kvm absent).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
SECTOR = 512
MARKER = b"VIREO-GUEST-IMAGE"
BLK_BYTES = 4096


def pattern(seed):
    return bytes((i * 31 + seed) & 0xFF for i in range(BLK_BYTES))


class Runner:
    def __init__(self, a, tmp):
        self.a, self.tmp = a, tmp
        self.sock = os.path.join(tmp, "bridge.sock")

    def vmm(self, zone, kernel, append, timeout=40):
        cmd = [self.a.vmm, "--kernel", kernel, "--bridge", self.sock, "--zone", str(zone),
               "--timeout", str(timeout), "--append", "transport=mmio irq=1 " + append]
        print("+", " ".join(cmd), flush=True)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    @staticmethod
    def finish(name, p, timeout=60):
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        text = out.decode(errors="replace")
        for line in text.splitlines():
            print(f"[{name}] {line}")
        print(f"[{name}] exit status {p.returncode}", flush=True)
        return p.returncode == 0 and "PASS" in text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vireo", required=True)
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--blk", required=True)
    ap.add_argument("--net", required=True)
    a = ap.parse_args()
    if not os.path.exists("/dev/kvm"):
        print("SKIP: /dev/kvm absent")
        return SKIP

    with tempfile.TemporaryDirectory(prefix="vireo-bridge-") as tmp:
        r = Runner(a, tmp)
        zones = []
        for z in (1, 2):
            img = os.path.join(tmp, f"zone{z}.img")
            with open(img, "wb") as f:
                f.write(MARKER + bytes(SECTOR - len(MARKER)))
                f.truncate(1 << 20)
            zones.append({
                "id": z,
                "memory_region": [{"zone0_ipa": "0x0", "zonex_ipa": "0x0", "size": "0x4000000"}],
                "devices": [
                    {"type": "blk", "addr": "0xd0000000", "len": "0x1000", "irq": 5,
                     "status": "enable", "img": img},
                    {"type": "net", "addr": "0xd0001000", "len": "0x1000", "irq": 6,
                     "status": "enable", "switch": "bridge-e2e", "mac": f"52:54:00:00:0b:0{z}"},
                ]})
        cfg = os.path.join(tmp, "virtio_cfg.json")
        with open(cfg, "w") as f:
            json.dump({"socket": r.sock, "zones": zones}, f, indent=1)
        daemon_log = open(os.path.join(tmp, "daemon.log"), "w+")
        daemon = subprocess.Popen([a.vireo, "run", cfg], stdout=daemon_log,
                                  stderr=subprocess.STDOUT)
        ok = True
        try:
            for _ in range(100):
                if os.path.exists(r.sock):
                    break
                time.sleep(0.05)
            # 1. blk in both zones at once.
            p1 = r.vmm(1, a.blk, "sector=8 seed=17")
            p2 = r.vmm(2, a.blk, "sector=16 seed=29")
            ok &= Runner.finish("zone1 blk", p1)
            ok &= Runner.finish("zone2 blk", p2)
            for z, sector, seed in ((1, 8, 17), (2, 16, 29)):
                with open(os.path.join(tmp, f"zone{z}.img"), "rb") as f:
                    f.seek(sector * SECTOR)
                    if f.read(BLK_BYTES) != pattern(seed):
                        print(f"FAIL: zone {z} image lacks its guest's pattern")
                        ok = False
            # 2. net between the zones.
            p1 = r.vmm(1, a.net, "peer=recv")
            p2 = r.vmm(2, a.net, "peer=send")
            ok &= Runner.finish("zone1 net recv", p1)
            ok &= Runner.finish("zone2 net send", p2)
            # 3. zone 2 killed and restarted while zone 1 keeps running.
            p1 = r.vmm(1, a.net, "peer=recv")
            victim = r.vmm(2, a.blk, "sector=24 seed=41")
            time.sleep(0.3)
            victim.send_signal(signal.SIGKILL)
            victim.communicate()
            print(f"[zone2] SIGKILLed (status {victim.returncode})", flush=True)
            ok &= Runner.finish("zone2 blk after restart", r.vmm(2, a.blk, "sector=24 seed=41"))
            ok &= Runner.finish("zone2 net send", r.vmm(2, a.net, "peer=send"))
            ok &= Runner.finish("zone1 net recv (undisturbed)", p1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            daemon_log.seek(0)
            for line in daemon_log.read().splitlines():
                print(f"[vireo] {line}")
            if daemon.returncode != 0:
                print(f"FAIL: vireo exit status {daemon.returncode}")
                ok = False
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
