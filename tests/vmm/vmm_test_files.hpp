// What the tests that run the vireo-vmm binary share: where the self-test guests are, a temporary
// directory for images and configs, and the skip when there is no KVM.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace vireo::vmm::test {

// A self-test guest built from tests/vmm/guests/NAME.S.
inline std::string guest(const char* name) {
    return std::string(VIREO_VMM_GUESTS) + "/" + name + ".elf";
}

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/vireo-vmm-test-XXXXXX";
        path_ = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    // Creates NAME in the directory with `content` (bytes, NULs included) and returns its path.
    std::string file(const std::string& name, const std::string& content = "") const {
        const std::string p = path_ + "/" + name;
        std::ofstream(p, std::ios::binary) << content;
        return p;
    }

  private:
    std::string path_;
};

}  // namespace vireo::vmm::test

#define REQUIRE_KVM()                                         \
    do {                                                      \
        if (!std::filesystem::exists("/dev/kvm")) {           \
            GTEST_SKIP() << "/dev/kvm is absent: no KVM run"; \
        }                                                     \
    } while (0)
