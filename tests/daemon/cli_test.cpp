// Runs the real `vireo` binary: argument errors, image errors, socket-path handling,
// --print-capabilities, and a clean SIGTERM shutdown. Asserts messages and exit codes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memory/unique_fd.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/protocol.hpp"

namespace {

namespace fs = std::filesystem;

struct Run {
    int status = -1;  // exit code, or -signal
    std::string out;  // stdout + stderr
};

// Runs vireo with args, stdout+stderr captured; bounded by `timeout 30` so a hang fails.
Run run(const std::string& args) {
    const std::string cmd = std::string("timeout 30 ") + VIREO_BIN + " " + args + " 2>&1";
    Run r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) {
        return r;
    }
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        r.out.append(buf, n);
    }
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

class Cli : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("vireo-cli-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
        image_ = (dir_ / "disk.img").string();
        std::ofstream(image_).close();
        fs::resize_file(image_, 1 << 20);
        sock_ = (dir_ / "vhost.sock").string();
    }
    void TearDown() override { fs::remove_all(dir_); }

    fs::path dir_;
    std::string image_;
    std::string sock_;
};

TEST_F(Cli, UnknownOptionIsNamed) {
    auto r = run("blk --socket-path /tmp/x.sock --image /tmp/x.img --frobnicate");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("--frobnicate"), std::string::npos) << r.out;
}

TEST_F(Cli, MissingSubcommandOrRequiredOptions) {
    EXPECT_EQ(run("").status, 2);
    auto r = run("blk --image " + image_);
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("--socket-path"), std::string::npos) << r.out;
    r = run("blk --socket-path " + sock_);
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("--image"), std::string::npos) << r.out;
    r = run("blk --socket-path " + sock_ + " --image " + image_ + " --engine aio");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("aio"), std::string::npos) << r.out;
    r = run("blk --socket-path " + sock_ + " --image " + image_ + " --queues 0");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("--queues"), std::string::npos) << r.out;
    r = run("blk --socket-path " + sock_ + " --image " + image_ + " --queue-size 100");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("--queue-size"), std::string::npos) << r.out;
}

TEST_F(Cli, PrintCapabilities) {
    // "Other options and arguments should be ignored" (vhost-user.rst back-end conventions).
    for (const char* args : {"blk --print-capabilities", "blk --print-capabilities --bogus"}) {
        auto r = run(args);
        EXPECT_EQ(r.status, 0) << r.out;
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        ASSERT_FALSE(j.is_discarded()) << r.out;
        EXPECT_EQ(j["type"], "block");
        EXPECT_TRUE(j["features"].is_array());
    }
}

TEST_F(Cli, MissingImage) {
    const std::string missing = (dir_ / "nope.img").string();
    auto r = run("blk --socket-path " + sock_ + " --image " + missing);
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find(missing), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("No such file"), std::string::npos) << r.out;
}

TEST_F(Cli, ImageSizeNotSectorMultiple) {
    fs::resize_file(image_, 1000);
    auto r = run("blk --socket-path " + sock_ + " --image " + image_ + " --engine sync");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("multiple of 512"), std::string::npos) << r.out;
}

TEST_F(Cli, BadConfigNamesField) {
    const std::string cfg = (dir_ / "c.json").string();
    std::ofstream(cfg) << R"({"devices": [{"type": "blk", "socket_path": "/s", "image": "/i",
                                           "queue_size": "big"}]})";
    auto r = run("run " + cfg);
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("config.devices[0].queue_size"), std::string::npos) << r.out;
    r = run("run " + (dir_ / "missing.json").string());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("missing.json"), std::string::npos) << r.out;
}

vireo::UniqueFd listen_at(const std::string& path) {
    vireo::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd.get(), 1), 0);
    return fd;
}

vireo::UniqueFd connect_to(const std::string& path) {
    vireo::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        return {};
    }
    return fd;
}

TEST_F(Cli, LiveSocketRefused) {
    auto l = listen_at(sock_);
    auto r = run("blk --socket-path " + sock_ + " --image " + image_ + " --engine sync");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("in use"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(sock_), std::string::npos) << r.out;
}

// A daemon in the background, its output in a file.
struct Daemon {
    pid_t pid = -1;
    std::string log;
    Daemon(const std::vector<std::string>& args, std::string logfile) : log(std::move(logfile)) {
        pid = ::fork();
        if (pid == 0) {
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            std::vector<char*> argv{const_cast<char*>(VIREO_BIN)};
            for (const auto& a : args) {
                argv.push_back(const_cast<char*>(a.c_str()));
            }
            argv.push_back(nullptr);
            ::execv(VIREO_BIN, argv.data());
            ::_exit(127);
        }
    }
    // Waits (bounded) until the socket accepts connections.
    vireo::UniqueFd connect(const std::string& path) {
        for (int i = 0; i < 1000; ++i) {
            if (auto fd = connect_to(path)) {
                return fd;
            }
            ::usleep(10000);
        }
        return {};
    }
    int stop(int sig) {
        ::kill(pid, sig);
        int st = 0;
        ::waitpid(pid, &st, 0);
        pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    }
    std::string output() const {
        std::ifstream in(log);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    ~Daemon() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }
};

TEST_F(Cli, StaleSocketReplacedAndSigtermExitsCleanly) {
    { auto l = listen_at(sock_); }  // closed: the file stays behind, nobody listens
    ASSERT_TRUE(fs::exists(sock_));
    Daemon d({"blk", "--socket-path", sock_, "--image", image_, "--engine", "sync", "--verbose"},
             (dir_ / "log").string());
    auto c = d.connect(sock_);
    ASSERT_TRUE(c.valid()) << d.output();
    // One message round trip over the real socket.
    using namespace vireo::vhost_user;
    const Header h{static_cast<std::uint32_t>(Request::kGetFeatures), kVersion, 0};
    ASSERT_TRUE(send(c.get(), h, {}));
    auto rep = receive(c.get());
    ASSERT_TRUE(rep.has_value());
    std::uint64_t f = 0;
    ASSERT_EQ(rep->payload.size(), sizeof f);
    std::memcpy(&f, rep->payload.data(), sizeof f);
    EXPECT_NE(f & (1ull << kFProtocolFeatures), 0u);
    EXPECT_EQ(d.stop(SIGTERM), 0) << d.output();
    const std::string out = d.output();
    EXPECT_NE(out.find("stale"), std::string::npos) << out;
    EXPECT_NE(out.find("GET_FEATURES"), std::string::npos) << out;  // --verbose trace
    EXPECT_NE(out.find("front end connected"), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(sock_));  // removed at shutdown
}

// In a forked child: makes `fd` descriptor 3, open across exec (dup2 onto itself would keep
// FD_CLOEXEC, so clear it explicitly).
void inherit_as_fd3(int fd) {
    if (fd != 3) ::dup2(fd, 3);
    ::fcntl(3, F_SETFD, 0);
}

// vhost-user.rst's back-end convention --fd=FDNUM with a connected socket (libvirt hands the
// back end one end of a socketpair, the front end the other): vireo serves it and, once that
// front end has gone, exits by itself with status 0.
TEST_F(Cli, FdConnectedSocketIsTheFrontEnd) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
              0);  // the child keeps only fd 3
    const pid_t pid = ::fork();
    if (pid == 0) {
        inherit_as_fd3(sv[1]);
        ::execl(VIREO_BIN, VIREO_BIN, "blk", "--fd", "3", "--image", image_.c_str(), "--engine",
                "sync", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(sv[1]);
    using namespace vireo::vhost_user;
    const Header h{static_cast<std::uint32_t>(Request::kGetFeatures), kVersion, 0};
    ASSERT_TRUE(send(sv[0], h, {}));
    auto rep = receive(sv[0]);
    ASSERT_TRUE(rep.has_value());
    EXPECT_EQ(rep->payload.size(), sizeof(std::uint64_t));
    ::close(sv[0]);  // the front end goes away for good
    int st = 0;
    for (int i = 0; i < 500 && ::waitpid(pid, &st, WNOHANG) == 0; ++i) ::usleep(10000);
    if (::waitpid(pid, &st, WNOHANG) == 0 && !WIFEXITED(st)) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        FAIL() << "vireo did not exit after its only front end left";
    }
    EXPECT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0);
}

// --fd with a listening socket: served like --socket-path (and the file is not ours to remove).
TEST_F(Cli, FdListeningSocket) {
    auto l = listen_at(sock_);
    ASSERT_TRUE(l.valid());
    const pid_t pid = ::fork();
    if (pid == 0) {
        inherit_as_fd3(l.get());
        ::execl(VIREO_BIN, VIREO_BIN, "blk", "--fd", "3", "--image", image_.c_str(), "--engine",
                "sync", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    l.reset();
    vireo::UniqueFd c;
    for (int i = 0; i < 500 && !c.valid(); ++i) {
        c = connect_to(sock_);
        if (!c.valid()) ::usleep(10000);
    }
    ASSERT_TRUE(c.valid());
    using namespace vireo::vhost_user;
    const Header h{static_cast<std::uint32_t>(Request::kGetFeatures), kVersion, 0};
    ASSERT_TRUE(send(c.get(), h, {}));
    EXPECT_TRUE(receive(c.get()).has_value());
    ::kill(pid, SIGTERM);
    int st = 0;
    ::waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_TRUE(fs::exists(sock_));  // the inheritor's file, not unlinked by vireo
}

TEST_F(Cli, FdErrors) {
    auto r = run("blk --fd 3 --socket-path " + sock_ + " --image " + image_);
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_NE(r.out.find("exclude"), std::string::npos) << r.out;
    r = run("blk --fd 0 --image " + image_ + " </dev/null");  // stdin: not a socket
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("not a socket"), std::string::npos) << r.out;
}

// The status line `key` of /proc/PID/status ("Uid:", "CapEff:"), whitespace collapsed.
std::string proc_status(pid_t pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with(key)) {
            std::string v;
            for (char c : line.substr(key.size())) {
                if (c == '\t' || c == ' ') {
                    if (!v.empty() && v.back() != ' ') v += ' ';
                } else {
                    v += c;
                }
            }
            while (!v.empty() && v.back() == ' ') v.pop_back();
            return v;
        }
    }
    return {};
}

// --user: after setup the daemon is nobody (real, effective, saved, filesystem ids), holds no
// capability, still serves its socket (chowned to it) and still shuts down cleanly.
TEST_F(Cli, UserDropsRootAfterSetup) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to change identity";
    fs::permissions(dir_, fs::perms::all | fs::perms::sticky_bit);  // nobody may unlink there
    Daemon d(
        {"--user", "nobody", "blk", "--socket-path", sock_, "--image", image_, "--engine", "sync"},
        (dir_ / "log").string());
    auto c = d.connect(sock_);
    ASSERT_TRUE(c.valid()) << d.output();
    // connect() can win the race with the identity change: wait for the log line.
    for (int i = 0; i < 500 && d.output().find("running as uid") == std::string::npos; ++i) {
        ::usleep(10000);
    }
    EXPECT_EQ(proc_status(d.pid, "Uid:"), "65534 65534 65534 65534") << d.output();
    EXPECT_EQ(proc_status(d.pid, "Gid:"), "65534 65534 65534 65534");
    EXPECT_EQ(proc_status(d.pid, "CapEff:"), "0000000000000000");
    EXPECT_EQ(proc_status(d.pid, "CapPrm:"), "0000000000000000");
    struct stat st {};
    ASSERT_EQ(::stat(sock_.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u);  // front ends running as that user can connect
    using namespace vireo::vhost_user;
    const Header h{static_cast<std::uint32_t>(Request::kGetFeatures), kVersion, 0};
    ASSERT_TRUE(send(c.get(), h, {}));
    EXPECT_TRUE(receive(c.get()).has_value()) << d.output();
    EXPECT_EQ(d.stop(SIGTERM), 0) << d.output();
}

TEST_F(Cli, UserErrorsAreNamed) {
    for (const char* spec : {"no-such-user-here", "root", "0:0", "123", "nobody:no-such-group"}) {
        auto r = run(std::string("--user ") + spec + " blk --socket-path " + sock_ + " --image " +
                     image_);
        EXPECT_EQ(r.status, 2) << spec << ": " << r.out;
        EXPECT_NE(r.out.find("--user"), std::string::npos) << r.out;
    }
}

TEST_F(Cli, RunServesSeveralSocketsAndSigint) {
    const std::string img2 = (dir_ / "disk2.img").string();
    std::ofstream(img2).close();
    fs::resize_file(img2, 1 << 20);
    const std::string s2 = (dir_ / "two.sock").string();
    const std::string cfg = (dir_ / "c.json").string();
    std::ofstream(cfg) << nlohmann::json{
        {"devices",
         {{{"type", "blk"}, {"socket_path", sock_}, {"image", image_}, {"engine", "sync"}},
          {{"type", "blk"},
           {"socket_path", s2},
           {"image", img2},
           {"read_only", true},
           {"queues", 2}}}}}.dump();
    Daemon d({"run", cfg}, (dir_ / "log").string());
    auto c1 = d.connect(sock_);
    auto c2 = d.connect(s2);
    EXPECT_TRUE(c1.valid()) << d.output();
    EXPECT_TRUE(c2.valid()) << d.output();
    EXPECT_EQ(d.stop(SIGINT), 0) << d.output();
}

}  // namespace
