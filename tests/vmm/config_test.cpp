// vireo-vmm configuration: --device strings, JSON documents and whole-machine checks.
#include "vmm/config.hpp"

#include <gtest/gtest.h>

namespace vireo::vmm {
namespace {

void expect_device_error(const char* spec, const char* needle) {
    auto d = parse_device(spec, "--device #1");
    ASSERT_FALSE(d) << spec;
    EXPECT_NE(d.error().find(needle), std::string::npos) << d.error();
    EXPECT_NE(d.error().find("--device #1"), std::string::npos) << d.error();
}

TEST(VmmConfig, ParsesSizes) {
    EXPECT_EQ(parse_size("64M").value(), 64ull << 20);
    EXPECT_EQ(parse_size("1G").value(), 1ull << 30);
    EXPECT_EQ(parse_size("512k").value(), 512ull << 10);
    EXPECT_EQ(parse_size("4096").value(), 4096u);
    for (const char* bad : {"", "M", "64Q", "-1", "1.5G", "99999999999999999999", "17179869184G"}) {
        auto s = parse_size(bad);
        EXPECT_FALSE(s) << bad;
    }
}

TEST(VmmConfig, ParsesDeviceStrings) {
    auto b = parse_device("blk,transport=pci,image=disk.img,read-only,packed=off", "d");
    ASSERT_TRUE(b) << b.error();
    EXPECT_EQ(b->kind, DeviceKind::kBlk);
    EXPECT_EQ(b->transport, Transport::kPci);
    EXPECT_EQ(b->blk.path, "disk.img");
    EXPECT_TRUE(b->blk.read_only);
    EXPECT_FALSE(b->packed);

    auto n = parse_device("net,switch=sw0,mac=52:54:00:12:34:56", "d");
    ASSERT_TRUE(n) << n.error();
    EXPECT_EQ(n->transport, Transport::kMmio);  // the default
    EXPECT_EQ(n->net_switch, "sw0");
    ASSERT_TRUE(n->mac);
    EXPECT_EQ((*n->mac)[5], 0x56);

    auto c = parse_device("console,file=/tmp/out.txt", "d");
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->console_file, "/tmp/out.txt");
    auto r = parse_device("rng,transport=pci,rate=1000", "d");
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->rng_rate, 1000u);
    auto e = parse_device("edu", "d");
    ASSERT_TRUE(e) << e.error();
    EXPECT_EQ(e->transport, Transport::kPci);
}

TEST(VmmConfig, DeviceErrorsNameTheProblem) {
    expect_device_error("blk,image=a,colour=red", "unknown key 'colour'");
    expect_device_error("gpu", "unknown device type 'gpu'");
    expect_device_error("", "missing device type");
    expect_device_error("blk,transport=mmio", "image=FILE");
    expect_device_error("blk,image=a,transport=usb", "transport 'usb'");
    expect_device_error("blk,image=a,image=b", "given twice");
    expect_device_error("blk,image=a,read-only=maybe", "on/off");
    expect_device_error("blk,image=a,queues=0", "at least 1");
    expect_device_error("blk,image=a,queue-size=70000", "queue-size");
    expect_device_error("blk,image=", "needs a value");
    expect_device_error("blk,,image=a", "empty option");
    expect_device_error("net,transport=pci", "switch=NAME or tap=NAME");
    expect_device_error("net,switch=a,tap=b", "exactly one");
    expect_device_error("net,switch=a,mac=zz", "mac");
    expect_device_error("console,stdio,file=x", "not both");
    expect_device_error("edu,transport=mmio", "PCI device");
    expect_device_error("rng,image=x", "unknown key 'image' for a rng device");
}

TEST(VmmConfig, ParsesJson) {
    auto c = parse_config(R"({
        "kernel": "guest.elf", "mem": "32M", "vcpus": 2, "append": "quiet", "timeout": 5,
        "devices": [
            {"type": "blk", "transport": "pci", "image": "d.img", "read_only": true},
            {"type": "net", "switch": "s"},
            {"type": "net", "switch": "s"},
            {"type": "edu"}
        ]})");
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->kernel, "guest.elf");
    EXPECT_EQ(c->mem_size, 32ull << 20);
    EXPECT_EQ(c->vcpus, 2u);
    EXPECT_EQ(c->timeout, 5.0);
    ASSERT_EQ(c->devices.size(), 4u);
    EXPECT_TRUE(c->devices[0].blk.read_only);
    EXPECT_TRUE(check_config(*c));
}

// The RV64 machine's keys (docs/riscv.md): arch selects it; harts is vcpus' alias; mem_given
// lets it keep its own 256M default.
TEST(VmmConfig, ParsesRiscvJson) {
    auto c = parse_config(R"({
        "arch": "riscv64", "kernel": "Image", "initrd": "i.cpio", "bios": "fw.bin",
        "harts": 2, "bridge": "/run/b.sock", "zone": 3, "stats": true,
        "devices": [{"type": "rng"}]})");
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->arch, "riscv64");
    EXPECT_EQ(c->initrd, "i.cpio");
    EXPECT_EQ(c->bios, "fw.bin");
    EXPECT_EQ(c->vcpus, 2u);
    EXPECT_EQ(c->bridge, "/run/b.sock");
    EXPECT_EQ(c->zone, 3u);
    EXPECT_TRUE(c->stats);
    EXPECT_FALSE(c->mem_given);
    // The x86 machine refuses riscv-only settings instead of ignoring them.
    auto r = check_config(*c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("riscv64"), std::string::npos) << r.error();
    c->arch = "x86_64";
    r = check_config(*c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("initrd"), std::string::npos) << r.error();
    for (const char* bad : {R"({"arch": "arm64"})", R"({"arch": 1})", R"({"zone": -2})",
                            R"({"stats": "yes"})", R"({"initrd": 5})"}) {
        EXPECT_FALSE(parse_config(bad)) << bad;
    }
    EXPECT_TRUE(parse_config(R"({"mem": "64M"})")->mem_given);
}

TEST(VmmConfig, JsonErrorsNameTheField) {
    struct Case {
        const char* json;
        const char* needle;
    };
    for (const Case& k : {
             Case{"{", "invalid JSON"},
             Case{"[]", "expected an object"},
             Case{R"({"kernal": "x"})", "config.kernal: unknown field"},
             Case{R"({"mem": "lots"})", "config.mem"},
             Case{R"({"vcpus": -1})", "config.vcpus"},
             Case{R"({"devices": {}})", "config.devices"},
             Case{R"({"devices": [{"image": "x"}]})", "config.devices[0].type"},
             Case{R"({"devices": [{"type": "blk", "image": "x", "size": 1.5}]})",
                  "config.devices[0].size"},
             Case{R"({"devices": [{"type": "blk", "image": "x", "wat": 1}]})", "unknown key 'wat'"},
         }) {
        auto c = parse_config(k.json);
        ASSERT_FALSE(c) << k.json;
        EXPECT_NE(c.error().find(k.needle), std::string::npos) << k.json << " -> " << c.error();
    }
}

TEST(VmmConfig, MachineChecks) {
    VmmConfig c;
    auto r = check_config(c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("kernel"), std::string::npos);
    c.kernel = "g.elf";
    EXPECT_TRUE(check_config(c));
    c.mem_size = 4ull << 30;
    EXPECT_FALSE(check_config(c));
    c.mem_size = 1 << 20;
    EXPECT_FALSE(check_config(c));
    c.mem_size = (8 << 20) + 1;
    EXPECT_FALSE(check_config(c));
    c.mem_size = 8 << 20;
    c.vcpus = 0;
    EXPECT_FALSE(check_config(c));
    c.vcpus = kMaxVcpus + 1;
    EXPECT_FALSE(check_config(c));
    c.vcpus = 1;
    c.append.assign(kMaxCmdline + 1, 'x');
    EXPECT_FALSE(check_config(c));
    c.append.clear();
    for (int i = 0; i < 17; ++i) {
        c.devices.push_back(*parse_device("rng", "d"));
    }
    r = check_config(c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("virtio-mmio"), std::string::npos);
    c.devices.clear();
    c.devices.push_back(*parse_device("console", "d"));
    c.devices.push_back(*parse_device("console,stdio", "d"));
    EXPECT_FALSE(check_config(c));
}

}  // namespace
}  // namespace vireo::vmm

TEST(VmmConfig, LegacyMmioOption) {
    using vireo::vmm::parse_device;
    auto l = parse_device("blk,transport=mmio,legacy,image=disk.img", "d");
    ASSERT_TRUE(l.has_value()) << l.error();
    EXPECT_TRUE(l->legacy);
    auto m = parse_device("rng", "d");
    ASSERT_TRUE(m.has_value());
    EXPECT_FALSE(m->legacy);
    auto p = parse_device("blk,transport=pci,legacy,image=disk.img", "d");
    ASSERT_FALSE(p.has_value());
    EXPECT_NE(p.error().find("legacy"), std::string::npos);
    EXPECT_FALSE(parse_device("edu,legacy", "d").has_value());
}
