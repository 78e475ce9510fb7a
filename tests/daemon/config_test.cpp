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
    expect_error(R"({"devices": [{"type": "net", "socket_path": "/s", "image": "/i"}]})",
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

}  // namespace
}  // namespace vireo::daemon
