// The hvisor-style zone configuration parser.
#include "bridge/zone_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace vireo::bridge {
namespace {

class ZoneConfigTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vireo-zone-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        ::close(fd);
        img_ = tmpl;
    }
    void TearDown() override { ::unlink(img_.c_str()); }

    std::string doc(const std::string& device_extra, const std::string& zone_extra = "") {
        return R"({"zones":[{"id":1,"memory_region":[{"zone0_ipa":"0x0","zonex_ipa":"0x0",
                 "size":"0x4000000"}],)" +
               zone_extra + R"("devices":[{"type":"blk","addr":"0xd0000000","len":"0x1000",
                 "irq":5,"status":"enable","img":")" +
               img_ + "\"" + device_extra + "}]}]}";
    }
    std::string img_;
};

TEST_F(ZoneConfigTest, ParsesHvisorFormat) {
    auto c = parse_zone_config(doc(""));
    ASSERT_TRUE(c) << c.error();
    ASSERT_EQ(c->zones.size(), 1u);
    const Zone& z = c->zones[0];
    EXPECT_EQ(z.id, 1u);
    ASSERT_EQ(z.regions.size(), 1u);
    EXPECT_EQ(z.regions[0].size, 0x4000000u);
    ASSERT_EQ(z.devices.size(), 1u);
    EXPECT_EQ(z.devices[0].addr, 0xd0000000u);
    EXPECT_EQ(z.devices[0].irq, 5u);
    EXPECT_EQ(z.devices[0].blk.path, img_);
    EXPECT_EQ(c->socket, kDefaultSocket);
    EXPECT_TRUE(is_zone_config(doc("")));
    EXPECT_FALSE(is_zone_config(R"({"devices":[]})"));
}

TEST_F(ZoneConfigTest, DisabledDevicesAreDropped) {
    std::string d = doc("");
    d.replace(d.find("\"enable\""), 8, "\"disable\"");
    auto c = parse_zone_config(d);
    ASSERT_TRUE(c) << c.error();
    EXPECT_TRUE(c->zones[0].devices.empty());
}

TEST_F(ZoneConfigTest, ErrorsNameTheField) {
    auto unknown = parse_zone_config(doc(R"(,"colour":"red")"));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error(), "config.zones[0].devices[0].colour: unknown field");

    auto zone_unknown = parse_zone_config(doc("", R"("cpus":[1],)"));
    ASSERT_FALSE(zone_unknown);
    EXPECT_EQ(zone_unknown.error(), "config.zones[0].cpus: unknown field");

    std::string missing = doc("");
    missing.replace(missing.find(img_), img_.size(), "/nonexistent/disk.img");
    auto m = parse_zone_config(missing);
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().find("config.zones[0].devices[0].img: '/nonexistent/disk.img' does not "
                             "exist"),
              std::string::npos)
        << m.error();

    std::string badhex = doc("");
    badhex.replace(badhex.find("0xd0000000"), 10, "0xzz");
    auto h = parse_zone_config(badhex);
    ASSERT_FALSE(h);
    EXPECT_EQ(h.error(), "config.zones[0].devices[0].addr: '0xzz' is not a number");
}

TEST_F(ZoneConfigTest, OverlapsAreReported) {
    // Device inside RAM.
    std::string in_ram = doc("");
    in_ram.replace(in_ram.find("0xd0000000"), 10, "0x1000");
    auto a = parse_zone_config(in_ram);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error(),
              "config.zones[0].devices[0].addr: overlaps config.zones[0].memory_region[0]");
    // Two devices on one page.
    auto b = parse_zone_config(R"({"zones":[{"id":1,"memory_region":[{"zone0_ipa":0,
        "zonex_ipa":0,"size":4096}],"devices":[
        {"type":"console","addr":"0xd0000000","irq":5},
        {"type":"console","addr":"0xd0000800","irq":6}]}]})");
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error(), "config.zones[0].devices[1].addr: overlaps config.zones[0].devices[0]");
    // Two regions.
    auto c = parse_zone_config(R"({"zones":[{"id":1,"memory_region":[
        {"zone0_ipa":0,"zonex_ipa":0,"size":8192},
        {"zone0_ipa":0,"zonex_ipa":4096,"size":4096}],"devices":[]}]})");
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error(), "config.zones[0].memory_region[1]: overlaps memory_region[0]");
    // Same irq twice, same zone id twice.
    auto d = parse_zone_config(R"({"zones":[{"id":1,"memory_region":[{"zone0_ipa":0,
        "zonex_ipa":0,"size":4096}],"devices":[
        {"type":"console","addr":"0xd0000000","irq":5},
        {"type":"console","addr":"0xd0001000","irq":5}]}]})");
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error(), "config.zones[0].devices[1].irq: 5 is used by another device");
    auto e = parse_zone_config(R"({"zones":[
        {"id":1,"memory_region":[{"zone0_ipa":0,"zonex_ipa":0,"size":4096}],"devices":[]},
        {"id":1,"memory_region":[{"zone0_ipa":0,"zonex_ipa":0,"size":4096}],"devices":[]}]})");
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error(), "config.zones[1].id: zone 1 appears twice");
}

TEST_F(ZoneConfigTest, NetNeedsOneEndpointAndParsesMacBytes) {
    auto ok = parse_zone_config(R"({"zones":[{"id":2,"memory_region":[{"zone0_ipa":0,
        "zonex_ipa":0,"size":4096}],"devices":[{"type":"net","addr":"0xd0000000","irq":5,
        "switch":"sw0","mac":[82,84,0,0,0,1]}]}],"socket":"/tmp/x.sock","ring_entries":1024})");
    ASSERT_TRUE(ok) << ok.error();
    EXPECT_EQ(ok->zones[0].devices[0].net_switch, "sw0");
    ASSERT_TRUE(ok->zones[0].devices[0].mac);
    EXPECT_EQ((*ok->zones[0].devices[0].mac)[0], 82);
    EXPECT_EQ(ok->ring_entries, 1024u);
    auto none = parse_zone_config(R"({"zones":[{"id":2,"memory_region":[{"zone0_ipa":0,
        "zonex_ipa":0,"size":4096}],"devices":[{"type":"net","addr":"0xd0000000","irq":5}]}]})");
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error(),
              "config.zones[0].devices[0]: net needs exactly one of \"tap\" and "
              "\"switch\"");
    auto ring = parse_zone_config(R"({"zones":[{"id":2,"memory_region":[{"zone0_ipa":0,
        "zonex_ipa":0,"size":4096}],"devices":[]}],"ring_entries":100})");
    ASSERT_FALSE(ring);
    EXPECT_EQ(ring.error(), "config.ring_entries: 100 is not a power of two in 1..65536");
}

TEST(ZoneConfig, GarbageNeverThrows) {
    for (const char* s : {"", "[", "null", "{\"zones\":5}", "{\"zones\":[1]}",
                          "{\"zones\":[{\"id\":-1}]}", "{\"zones\":[{\"id\":\"0x\"}]}"}) {
        EXPECT_FALSE(parse_zone_config(s)) << s;
    }
}

}  // namespace
}  // namespace vireo::bridge
