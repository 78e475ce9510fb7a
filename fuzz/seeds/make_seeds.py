#!/usr/bin/env python3
"""Writes the seed corpora of the device, vhost-user and config fuzzers (fuzz/corpus/<target>/).

The device fuzzers read a script (fuzz/device_fuzz.hpp): queue selector, feature mask, then
actions. These seeds are well-formed requests so the fuzzer starts inside each device's parser.
Run from the repository root: fuzz/seeds/make_seeds.py
"""
import os
import struct

ALL = 0xFF  # feature mask: EVENT_IDX, INDIRECT_DESC and every device bit kept


def seg(data=b"", write_len=None):
    if write_len is not None:
        return bytes([1]) + struct.pack("<H", write_len)
    return bytes([0]) + struct.pack("<H", len(data)) + data


def chain(*segs):
    return bytes([0, len(segs) - 1]) + b"".join(segs)


KICK = bytes([1])
EVENT = bytes([2])


def script(queue, *actions, mask=ALL):
    return bytes([queue, mask]) + b"".join(actions) + KICK


def write(target, name, data):
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- blk (§5.2.6): header, data, status ---------------------------------------------------
def blk_hdr(t, sector=0):
    return struct.pack("<IIQ", t, 0, sector)


write("fuzz_blk", "read", script(0, chain(seg(blk_hdr(0, 8)), seg(write_len=4096), seg(write_len=1))))
write("fuzz_blk", "write_flush", script(
    1, chain(seg(blk_hdr(1, 16)), seg(b"\xab" * 1024), seg(write_len=1)),
    chain(seg(blk_hdr(4)), seg(write_len=1))))
write("fuzz_blk", "get_id", script(0, chain(seg(blk_hdr(8)), seg(write_len=20), seg(write_len=1))))
write("fuzz_blk", "discard_wz", script(
    0, chain(seg(blk_hdr(11) + struct.pack("<QII", 0, 8, 0)), seg(write_len=1)),
    chain(seg(blk_hdr(13) + struct.pack("<QII", 8, 8, 1)), seg(write_len=1))))

# --- net (§5.1.6): TX header + frame; control commands -------------------------------------
frame = bytes(6) + bytes.fromhex("020000000001") + b"\x08\x00" + b"\x45" + bytes(45)
write("fuzz_net", "tx", script(1, chain(seg(bytes(12) + frame))))
write("fuzz_net", "tx_csum", script(1, chain(seg(bytes([1, 0]) + struct.pack("<HHHHH", 0, 0, 14, 16, 0)), seg(frame))))
ctrl = 4  # 2 pairs: ctrl queue is index 4


def ctrl_cmd(cls, cmd, payload):
    return chain(seg(bytes([cls, cmd]) + payload), seg(write_len=1))


write("fuzz_net", "ctrl_rx_mode", script(ctrl, ctrl_cmd(0, 0, b"\x01"), ctrl_cmd(0, 1, b"\x00")))
write("fuzz_net", "ctrl_mac_table", script(
    ctrl, ctrl_cmd(1, 0, struct.pack("<I", 1) + bytes(6) + struct.pack("<I", 1) + bytes.fromhex("01005e000001"))))
write("fuzz_net", "ctrl_mq", script(ctrl, ctrl_cmd(4, 0, struct.pack("<H", 2))))
write("fuzz_net", "ctrl_offloads", script(ctrl, ctrl_cmd(5, 0, struct.pack("<Q", 3))))
write("fuzz_net", "ctrl_vlan", script(ctrl, ctrl_cmd(2, 0, struct.pack("<H", 5)), ctrl_cmd(2, 1, struct.pack("<H", 5))))

# --- console (§5.3.6.2): control messages on controlq tx (3), data on port txqs --------------
def ctl(port, event, value):
    return chain(seg(struct.pack("<IHH", port, event, value)))


write("fuzz_console", "ready_open", script(
    3, ctl(0, 0, 1), ctl(0, 3, 1), ctl(1, 3, 1), ctl(1, 6, 1), ctl(1, 6, 0)))
write("fuzz_console", "port0_tx", script(1, chain(seg(b"hello, console\n"))))
write("fuzz_console", "port1_tx", script(5, chain(seg(b"data"), seg(b"more"))))
write("fuzz_console", "control_rx", script(2, chain(seg(write_len=64)), chain(seg(write_len=8))))

# --- rng: writable buffers ---------------------------------------------------------------
write("fuzz_rng", "one", script(0, chain(seg(write_len=64))))
write("fuzz_rng", "split_limited", bytes([0x80]) + script(0, chain(seg(write_len=4096), seg(write_len=512)))[1:])


# --- vsock (§5.10.6): tx queue is 1 --------------------------------------------------------
def vhdr(op, length=0, src_port=1234, dst_port=5000, flags=0):
    return struct.pack("<QQIIIHHIII", 3, 2, src_port, dst_port, length, 1, op, flags, 65536, 0)


write("fuzz_vsock", "request", script(1, chain(seg(vhdr(1)))))
write("fuzz_vsock", "rw_shutdown", script(
    1, chain(seg(vhdr(1))), chain(seg(vhdr(5, 5)), seg(b"hello")), chain(seg(vhdr(7))),
    chain(seg(vhdr(4, flags=3))), chain(seg(vhdr(3)))))
write("fuzz_vsock", "rx", script(0, chain(seg(write_len=4096)), chain(seg(write_len=44))))


# --- vhost-user: request, flags, payload --------------------------------------------------
def msg(req, payload=b"", reply=False, fd_kind=0, nfds=0):
    flags = (1 if reply else 0) | (fd_kind << 2) | (nfds << 4)
    return bytes([(req - 1) % 40, flags]) + struct.pack("<H", len(payload)) + payload


u64 = lambda v: struct.pack("<Q", v)  # noqa: E731
state = lambda i, n: struct.pack("<II", i, n)  # noqa: E731
mem_region = struct.pack("<QQQQ", 0, 2 << 20, 0x7f0000000000, 0)
setup = (msg(3) + msg(1, reply=True) + msg(15) + msg(16, u64(0x1F)) +
         msg(2, u64((1 << 32) | (1 << 30))) +
         msg(5, struct.pack("<II", 1, 0) + mem_region, fd_kind=2, nfds=1) +
         msg(8, state(0, 64)) +
         msg(9, struct.pack("<IIQQQQ", 0, 0, 0x7f0000000000, 0x7f0000001000, 0x7f0000002000, 0)) +
         msg(10, state(0, 0)) + msg(13, u64(0), fd_kind=1, nfds=1) +
         msg(12, u64(0), fd_kind=1, nfds=1) + msg(18, state(0, 1)))
write("fuzz_vhost_user", "setup_ring", setup + msg(11, state(0, 0)))
write("fuzz_vhost_user", "config", msg(16, u64(0x1FF)) + msg(24, struct.pack("<III", 0, 16, 0) + bytes(16)))
write("fuzz_vhost_user", "mem_slots", msg(16, u64(1 << 15)) + msg(36) +
      msg(37, u64(0) + mem_region, fd_kind=2, nfds=1) + msg(38, u64(0) + mem_region))
write("fuzz_vhost_user", "inflight", msg(16, u64(1 << 12)) + msg(31, struct.pack("<QQHH", 0, 0, 2, 64)) +
      msg(32, struct.pack("<QQHH", 2 << 20, 0, 2, 64), fd_kind=2, nfds=1))
write("fuzz_vhost_user", "status_reset", msg(16, u64((1 << 16) | (1 << 13))) + msg(39, u64(0xF)) + msg(40) + msg(34))

# --- JSON configs -------------------------------------------------------------------------
write("fuzz_daemon_config", "blk", b'{"devices":[{"type":"blk","socket":"/tmp/a.sock","image":"/tmp/d.img",'
      b'"read_only":true,"queues":2,"queue_size":128,"engine":"sync","serial":"x"}]}')
write("fuzz_daemon_config", "mixed", b'{"devices":[{"type":"net","socket":"/tmp/n.sock","switch":"sw0"},'
      b'{"type":"rng","socket":"/tmp/r.sock","max_bytes_per_sec":1024},'
      b'{"type":"console","socket":"/tmp/c.sock","ports":["stdio","unix:/tmp/p,name=x"]},'
      b'{"type":"vsock","socket":"/tmp/v.sock","guest_cid":3,"uds_path":"/tmp/v"}]}')
write("fuzz_vmm_config", "full", b'{"kernel":"k.elf","mem":"64M","vcpus":2,"append":"x","serial":"stdio",'
      b'"timeout":5,"devices":[{"type":"blk","transport":"pci","image":"d.img","read-only":true},'
      b'{"type":"net","transport":"mmio"},{"type":"rng"}]}')
write("fuzz_vmm_config", "device_opt", b"blk,transport=pci,image=disk.img,read-only")
