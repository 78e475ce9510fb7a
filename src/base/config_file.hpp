// Loading a configuration file: read it whole, parse it, and name the file in any error.
#pragma once

#include <concepts>
#include <expected>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace vireo {

// `parse(text)` returns std::expected<Config, std::string>; so does this, with errors prefixed
// by the path ("PATH: field x: ..."), or "cannot read config file 'PATH'".
template <typename Parse>
requires std::invocable<Parse, std::string_view>
auto load_config_file(const std::string& path, Parse parse) -> decltype(parse(std::string_view{})) {
    std::ifstream in(path);
    if (!in) {
        return fail("cannot read config file '{}'", path);
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        return fail("cannot read config file '{}'", path);
    }
    auto cfg = parse(std::string_view(text.str()));
    if (!cfg) {
        return fail("{}: {}", path, cfg.error());
    }
    return cfg;
}

}  // namespace vireo
