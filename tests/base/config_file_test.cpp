// load_config_file: the file is read whole and handed to the parser; every error names the file.
#include "base/config_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace vireo {
namespace {

std::expected<std::string, std::string> echo(std::string_view text) {
    if (text.starts_with("bad")) {
        return fail("field {}: not a number", "size");
    }
    return std::string(text);
}

class ConfigFileTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vireo-config-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        ::close(fd);
        path_ = tmpl;
    }
    void TearDown() override { ::unlink(path_.c_str()); }
    void write(const std::string& text) { std::ofstream(path_) << text; }
    std::string path_;
};

TEST_F(ConfigFileTest, HandsTheWholeFileToTheParser) {
    const std::string text(100000, 'x');  // larger than any stream buffer
    write(text);
    auto r = load_config_file(path_, echo);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, text);
}

TEST_F(ConfigFileTest, ParseErrorsNameTheFile) {
    write("bad");
    auto r = load_config_file(path_, echo);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), path_ + ": field size: not a number");
}

TEST_F(ConfigFileTest, MissingFileIsNamed) {
    auto r = load_config_file(path_ + ".missing", echo);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), "cannot read config file '" + path_ + ".missing'");
}

TEST(VireoTry, ReturnsTheFirstError) {
    auto step = [](bool ok) -> std::expected<void, std::string> {
        if (!ok) {
            return fail("step failed");
        }
        return {};
    };
    int reached = 0;
    auto run = [&](bool first, bool second) -> std::expected<int, std::string> {
        VIREO_TRY(step(first));
        ++reached;
        VIREO_TRY(step(second));
        return 7;
    };
    EXPECT_EQ(run(true, true).value(), 7);
    EXPECT_EQ(run(true, false).error(), "step failed");
    EXPECT_EQ(run(false, true).error(), "step failed");
    EXPECT_EQ(reached, 2);
}

}  // namespace
}  // namespace vireo
