// virtio-console guest: writes a line through port 0 (the CTest wrapper finds it in the VMM's
// output); with input=1 it also waits for a line of input and echoes it back.
#include "common.hpp"
#include "drivers/virtio_console.hpp"

using namespace vireo::guest;

namespace {
constinit ConsoleDevice port;
constexpr char kLine[] = "vireo-guest: hello from virtio-console\n";
}  // namespace

int guest_main() {
    const test::Env env = test::parse_env();
    Transport* t = test::find_device(env, kIdConsole);
    if (t == nullptr || !port.init(*t, env.opts)) {
        return 1;
    }
    if (!port.write(kLine, sizeof kLine - 1)) {
        return 2;
    }
    if (opt_flag("input", false)) {
        char in[64];
        const int n = port.read(in, sizeof in - 1, 5000);
        if (n <= 0) {
            print("console: no input\n");
            return 3;
        }
        in[n] = '\0';
        print("console: got %d bytes: %s\n", n, in);
        char echo[80] = "echo: ";
        int k = 6;
        for (int i = 0; i < n && k < 79; ++i) {
            echo[k++] = in[i];
        }
        if (!port.write(echo, static_cast<std::uint32_t>(k))) {
            return 4;
        }
    }
    if (!test::check_interrupts(env, *t)) {
        return 5;
    }
    print("console: PASS\n");
    return 0;
}
