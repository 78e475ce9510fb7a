// `vireo run` configuration parsing: good documents, and errors that name the field.
#include "daemon/config.hpp"

#include <gtest/gtest.h>

namespace vireo::daemon {
namespace {

TEST(Config, ParsesDevicesWithDefaults) {
    auto c = parse_config(R"({
      "verbose": true,
      "devices": [
        {"type": "blk", "socket_path": "/tmp/a.sock", "image": "/tmp/a.img"},
        {"type": "blk", "socket_path": "/tmp/b.sock", "image": "/dev/sdb", "read_only": true,
         "queues": 4, "queue_size": 128, "engine": "sync", "direct": true, "serial": "disk-b"}
      ]})");
    ASSERT_TRUE(c) << c.error();
    EXPECT_TRUE(c->verbose);
    ASSERT_EQ(c->devices.size(), 2u);
    EXPECT_EQ(c->devices[0].socket_path, "/tmp/a.sock");
    EXPECT_EQ(c->devices[0].blk.path, "/tmp/a.img");
    EXPECT_EQ(c->devices[0].blk.num_queues, 1);
    EXPECT_EQ(c->devices[0].blk.engine, dev::BlkEngine::kUring);
    EXPECT_TRUE(c->devices[1].blk.read_only);
    EXPECT_EQ(c->devices[1].blk.num_queues, 4);
    EXPECT_EQ(c->devices[1].blk.queue_size, 128);
    EXPECT_EQ(c->devices[1].blk.engine, dev::BlkEngine::kSync);
    EXPECT_TRUE(c->devices[1].blk.direct);
    EXPECT_EQ(c->devices[1].blk.serial, "disk-b");
}

// Each bad document's error must mention `field`.
void expect_error(const char* doc, const char* field) {
    auto c = parse_config(doc);
    ASSERT_FALSE(c) << doc;
    EXPECT_NE(c.error().find(field), std::string::npos) << c.error();
}

TEST(Config, ErrorsNameTheField) {
    expect_error("{", "invalid JSON");
    expect_error("[]", "top level");
    expect_error("{}", "config.devices");
    expect_error(R"({"devices": []})", "config.devices");
    expect_error(R"({"devices": [1]})", "config.devices[0]");
    expect_error(R"({"devices": [{"socket_path": "/s", "image": "/i"}]})",
                 "config.devices[0].type");
    expect_error(R"({"devices": [{"type": "gpu", "socket_path": "/s", "image": "/i"}]})",
                 "config.devices[0].type");
    expect_error(R"({"devices": [{"type": "blk", "image": "/i"}]})",
                 "config.devices[0].socket_path");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s"}]})",
                 "config.devices[0].image");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i",
                                  "queues": "2"}]})",
                 "config.devices[0].queues");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i",
                                  "queues": 0}]})",
                 "config.devices[0].queues");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i",
                                  "queue_size": 100}]})",
                 "config.devices[0].queue_size");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i",
                                  "engine": "aio"}]})",
                 "config.devices[0].engine");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i",
                                  "read_only": 1}]})",
                 "config.devices[0].read_only");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i",
                                  "readonly": true}]})",
                 "config.devices[0].readonly");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i"},
                                 {"type": "blk", "socket_path": "/s", "image": "/j"}]})",
                 "config.devices[1].socket_path");
    expect_error(R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i"}],
                     "verbos": true})",
                 "config.verbos");
}

TEST(Config, EngineNames) {
    EXPECT_EQ(parse_engine("io_uring"), dev::BlkEngine::kUring);
    EXPECT_EQ(parse_engine("uring"), dev::BlkEngine::kUring);
    EXPECT_EQ(parse_engine("sync"), dev::BlkEngine::kSync);
    EXPECT_FALSE(parse_engine("posix-aio"));
}

TEST(Config, ParsesEveryDeviceType) {
    auto c = parse_config(R"({"devices": [
      {"type": "net", "socket_path": "/tmp/n1.sock", "switch": "lan", "mac": "52:54:00:00:00:01"},
      {"type": "net", "socket_path": "/tmp/n2.sock", "tap": "tap0", "queues": 2},
      {"type": "console", "socket_path": "/tmp/c.sock", "backend": "unix", "path": "/tmp/c0",
       "ports": [{"name": "org.x", "backend": "unix", "path": "/tmp/c1"}]},
      {"type": "rng", "socket_path": "/tmp/r.sock", "max_bytes_per_sec": 4096},
      {"type": "vsock", "socket_path": "/tmp/v.sock", "guest_cid": 7, "uds_path": "/tmp/v"}
    ]})");
    ASSERT_TRUE(c) << c.error();
    ASSERT_EQ(c->devices.size(), 5u);
    EXPECT_EQ(c->devices[0].type, DeviceType::kNet);
    EXPECT_EQ(c->devices[0].net.switch_name, "lan");
    ASSERT_TRUE(c->devices[0].net.mac);
    EXPECT_EQ(dev::to_string(*c->devices[0].net.mac), "52:54:00:00:00:01");
    EXPECT_EQ(c->devices[1].net.tap, "tap0");
    EXPECT_EQ(c->devices[1].net.queue_pairs, 2);
    ASSERT_EQ(c->devices[2].console.ports.size(), 2u);
    EXPECT_EQ(c->devices[2].console.ports[0].kind, dev::ConsoleBackendKind::kUnix);
    EXPECT_EQ(c->devices[2].console.ports[0].path, "/tmp/c0");
    EXPECT_EQ(c->devices[2].console.ports[1].name, "org.x");
    EXPECT_EQ(c->devices[3].rng.max_bytes_per_sec, 4096u);
    EXPECT_EQ(c->devices[4].vsock.guest_cid, 7u);
    EXPECT_EQ(c->devices[4].vsock.uds_path, "/tmp/v");
}

TEST(Config, DeviceTypeErrorsNameTheField) {
    expect_error(R"({"devices": [{"type": "net", "socket_path": "/a"}]})", "tap and switch");
    expect_error(
        R"({"devices": [{"type": "net", "socket_path": "/a", "tap": "t", "switch": "s"}]})",
        "exactly one");
    expect_error(R"({"devices": [{"type": "net", "socket_path": "/a", "tap": "t", "mac": "zz"}]})",
                 "config.devices[0].mac");
    expect_error(
        R"({"devices": [{"type": "net", "socket_path": "/a", "tap": "t", "queues": 200}]})",
        "config.devices[0].queues");
    expect_error(R"({"devices": [{"type": "console", "socket_path": "/a", "backend": "tcp"}]})",
                 "config.devices[0].backend");
    expect_error(R"({"devices": [{"type": "console", "socket_path": "/a", "backend": "unix"}]})",
                 "config.devices[0].path");
    expect_error(R"({"devices": [{"type": "console", "socket_path": "/a",
                   "ports": [{"backend": "pty"}]}]})",
                 "config.devices[0].ports[0].name");
    expect_error(R"({"devices": [{"type": "console", "socket_path": "/a", "ports": [
                   {"name": "x", "backend": "pty"}, {"name": "x", "backend": "pty"}]}]})",
                 "used twice");
    expect_error(R"({"devices": [{"type": "vsock", "socket_path": "/a", "uds_path": "/v"}]})",
                 "config.devices[0].guest_cid");
    expect_error(R"({"devices": [{"type": "vsock", "socket_path": "/a", "guest_cid": 2,
                   "uds_path": "/v"}]})",
                 "config.devices[0].guest_cid");
    expect_error(R"({"devices": [{"type": "vsock", "socket_path": "/a", "guest_cid": 3,
                   "uds_path": "/a"}]})",
                 "config.devices[0].uds_path");
    expect_error(R"({"devices": [{"type": "rng", "socket_path": "/a", "rate": 1}]})",
                 "config.devices[0].rate");
    expect_error(R"({"devices": [{"type": "gpu", "socket_path": "/a"}]})",
                 "config.devices[0].type");
}

TEST(Config, ConsolePortSpecs) {
    auto p = parse_console_port("org.a:unix:/tmp/s", true);
    ASSERT_TRUE(p) << p.error();
    EXPECT_EQ(p->name, "org.a");
    EXPECT_EQ(p->kind, dev::ConsoleBackendKind::kUnix);
    EXPECT_EQ(p->path, "/tmp/s");
    p = parse_console_port("pty", false);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->kind, dev::ConsoleBackendKind::kPty);
    EXPECT_FALSE(parse_console_port("pty", true));  // a name is required
    EXPECT_FALSE(parse_console_port("x:tcp:1", true));
    EXPECT_FALSE(parse_console_port("x:unix:", true));
}

}  // namespace
}  // namespace vireo::daemon
